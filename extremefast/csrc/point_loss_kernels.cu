// Point loss (Roth et al., eqs. 6-8) on the GPU: the repeated zero-padded box filter is
// applied as a banded matrix M (L x L, half-bandwidth H) along each axis; the last pass is
// fused with the loss and its gradient seed. Pure CUDA, no PyTorch headers, so that this
// file alone compiles with nvcc as a check; point_loss_op.cpp registers the torch op.
// Every kernel exists for float (training) and double (the float64 gradient check).
#include <cuda_runtime.h>
#include <stdint.h>

namespace {

__device__ __forceinline__ float exp_of(float v) { return __expf(v); }
__device__ __forceinline__ double exp_of(double v) { return exp(v); }

// sum_{|k - i| <= H} m[i, k] * x[a, k, b] for the output element idx of an A x L x B tensor.
template <typename T>
__device__ __forceinline__ T band_sum(const T* __restrict__ x, const T* __restrict__ m, int64_t idx, int L,
                                      int64_t B, int H) {
  int64_t b = idx % B;
  int64_t rest = idx / B;
  int i = (int)(rest % L);
  int64_t a = rest / L;
  int k0 = i - H < 0 ? 0 : i - H;
  int k1 = i + H > L - 1 ? L - 1 : i + H;
  const T* xa = x + a * (int64_t)L * B + b;
  const T* mi = m + (int64_t)i * L;
  T acc = 0;
  for (int k = k0; k <= k1; ++k) acc += mi[k] * xa[(int64_t)k * B];
  return acc;
}

// out[a, i, b] = sum_{|k - i| <= H} m[i, k] * x[a, k, b]; x, out: A x L x B contiguous.
template <typename T>
__global__ void band_apply_kernel(const T* __restrict__ x, const T* __restrict__ m, T* __restrict__ out, int64_t A,
                                  int L, int64_t B, int H) {
  int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  int64_t total = A * (int64_t)L * B;
  if (idx >= total) return;
  out[idx] = band_sum(x, m, idx, L, B, H);
}

// Last forward pass (axis 0) fused with the loss: g0 = M x, boundary = exp(-(g0-.5)^2),
// seed = scale * g * (g0 - .5) * boundary, and one partial sum of boundary * g per block.
template <typename T>
__global__ void band_apply_loss_kernel(const T* __restrict__ x, const T* __restrict__ m, const T* __restrict__ g,
                                       T* __restrict__ seed, T* __restrict__ partial, int64_t A, int L, int64_t B,
                                       int H, T scale) {
  extern __shared__ unsigned char shared_bytes[];
  T* sums = reinterpret_cast<T*>(shared_bytes);
  int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  int64_t total = A * (int64_t)L * B;
  T contrib = 0;
  if (idx < total) {
    T d = band_sum(x, m, idx, L, B, H) - (T)0.5;
    T boundary = exp_of(-d * d);
    T gv = g[idx];
    contrib = boundary * gv;
    seed[idx] = scale * gv * d * boundary;
  }
  sums[threadIdx.x] = contrib;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) sums[threadIdx.x] += sums[threadIdx.x + s];
    __syncthreads();
  }
  if (threadIdx.x == 0) partial[blockIdx.x] = sums[0];
}

constexpr int kThreads = 256;

template <typename T>
int band_apply(const T* x, const T* m, T* out, int64_t A, int L, int64_t B, int H, cudaStream_t stream) {
  int64_t total = A * (int64_t)L * B;
  int64_t blocks = (total + kThreads - 1) / kThreads;
  band_apply_kernel<T><<<(unsigned)blocks, kThreads, 0, stream>>>(x, m, out, A, L, B, H);
  return (int)cudaGetLastError();
}

template <typename T>
int band_apply_loss(const T* x, const T* m, const T* g, T* seed, T* partial, int64_t A, int L, int64_t B, int H,
                    T scale, cudaStream_t stream) {
  int64_t total = A * (int64_t)L * B;
  int64_t blocks = (total + kThreads - 1) / kThreads;
  band_apply_loss_kernel<T><<<(unsigned)blocks, kThreads, kThreads * sizeof(T), stream>>>(x, m, g, seed, partial, A,
                                                                                          L, B, H, scale);
  return (int)cudaGetLastError();
}

}  // namespace

extern "C" int64_t extremefast_loss_blocks(int64_t total) { return (total + kThreads - 1) / kThreads; }

extern "C" int extremefast_band_apply_f32(const float* x, const float* m, float* out, int64_t A, int L, int64_t B,
                                          int H, cudaStream_t stream) {
  return band_apply<float>(x, m, out, A, L, B, H, stream);
}

extern "C" int extremefast_band_apply_f64(const double* x, const double* m, double* out, int64_t A, int L, int64_t B,
                                          int H, cudaStream_t stream) {
  return band_apply<double>(x, m, out, A, L, B, H, stream);
}

extern "C" int extremefast_band_apply_loss_f32(const float* x, const float* m, const float* g, float* seed,
                                               float* partial, int64_t A, int L, int64_t B, int H, float scale,
                                               cudaStream_t stream) {
  return band_apply_loss<float>(x, m, g, seed, partial, A, L, B, H, scale, stream);
}

extern "C" int extremefast_band_apply_loss_f64(const double* x, const double* m, const double* g, double* seed,
                                               double* partial, int64_t A, int L, int64_t B, int H, double scale,
                                               cudaStream_t stream) {
  return band_apply_loss<double>(x, m, g, seed, partial, A, L, B, H, scale, stream);
}
