// Registers extremefast::point_loss_fused(prediction, point_channel, m0, m1, m2, half_band)
// -> (loss, grad) as a torch op. The fake (meta) implementation is registered in Python
// (extremefast/losses/cuda.py) so that torch.compile can trace through the op.
#include <ATen/cuda/CUDAContext.h>
#include <torch/extension.h>

extern "C" int extremefast_band_apply_f32(const float*, const float*, float*, int64_t, int, int64_t, int,
                                          cudaStream_t);
extern "C" int extremefast_band_apply_f64(const double*, const double*, double*, int64_t, int, int64_t, int,
                                          cudaStream_t);
extern "C" int64_t extremefast_loss_blocks(int64_t);
extern "C" int extremefast_band_apply_loss_f32(const float*, const float*, const float*, float*, float*, int64_t,
                                               int, int64_t, int, float, cudaStream_t);
extern "C" int extremefast_band_apply_loss_f64(const double*, const double*, const double*, double*, double*,
                                               int64_t, int, int64_t, int, double, cudaStream_t);

namespace {

void check_launch(int err) { TORCH_CHECK(err == 0, "extremefast point-loss kernel failed: ", cudaGetErrorString((cudaError_t)err)); }

at::Tensor band(const at::Tensor& x, const at::Tensor& m, int64_t A, int64_t L, int64_t B, int64_t H) {
  auto out = at::empty_like(x);
  auto stream = at::cuda::getCurrentCUDAStream();
  if (x.scalar_type() == at::kDouble) {
    check_launch(extremefast_band_apply_f64(x.data_ptr<double>(), m.data_ptr<double>(), out.data_ptr<double>(), A,
                                            (int)L, B, (int)H, stream));
  } else {
    check_launch(extremefast_band_apply_f32(x.data_ptr<float>(), m.data_ptr<float>(), out.data_ptr<float>(), A,
                                            (int)L, B, (int)H, stream));
  }
  return out;
}

std::tuple<at::Tensor, at::Tensor> point_loss_fused(const at::Tensor& prediction, const at::Tensor& point_channel,
                                                    const at::Tensor& m0, const at::Tensor& m1, const at::Tensor& m2,
                                                    int64_t half_band) {
  TORCH_CHECK(prediction.is_cuda() && point_channel.is_cuda(), "point_loss_fused: tensors must be on a CUDA device");
  TORCH_CHECK(prediction.dim() == 5, "point_loss_fused: prediction must be (N, C, L0, L1, L2), got ", prediction.sizes());
  TORCH_CHECK(prediction.sizes() == point_channel.sizes(), "point_loss_fused: point_channel shape ",
              point_channel.sizes(), " differs from prediction ", prediction.sizes());
  const auto dtype = prediction.scalar_type();
  TORCH_CHECK((dtype == at::kFloat || dtype == at::kDouble) && point_channel.scalar_type() == dtype &&
                  m0.scalar_type() == dtype && m1.scalar_type() == dtype && m2.scalar_type() == dtype,
              "point_loss_fused: all tensors float32, or all float64, expected");
  auto p = prediction.contiguous();
  auto g = point_channel.contiguous();
  const int64_t nc = p.size(0) * p.size(1), l0 = p.size(2), l1 = p.size(3), l2 = p.size(4);
  TORCH_CHECK(m0.size(0) == l0 && m1.size(0) == l1 && m2.size(0) == l2, "point_loss_fused: operator sizes differ");
  auto c0 = m0.contiguous(), c1 = m1.contiguous(), c2 = m2.contiguous();
  // forward: last axis, axis 1, then axis 0 fused with the loss
  auto x = band(p, c2, nc * l0 * l1, l2, 1, half_band);
  x = band(x, c1, nc * l0, l1, l2, half_band);
  auto seed = at::empty_like(x);
  const int64_t total = p.numel();
  auto partial = at::empty({extremefast_loss_blocks(total)}, p.options());
  auto stream = at::cuda::getCurrentCUDAStream();
  if (dtype == at::kDouble) {
    check_launch(extremefast_band_apply_loss_f64(x.data_ptr<double>(), c0.data_ptr<double>(), g.data_ptr<double>(),
                                                 seed.data_ptr<double>(), partial.data_ptr<double>(), nc, (int)l0,
                                                 l1 * l2, (int)half_band, 2.0 / (double)total, stream));
  } else {
    check_launch(extremefast_band_apply_loss_f32(x.data_ptr<float>(), c0.data_ptr<float>(), g.data_ptr<float>(),
                                                 seed.data_ptr<float>(), partial.data_ptr<float>(), nc, (int)l0,
                                                 l1 * l2, (int)half_band, 2.0f / (float)total, stream));
  }
  auto loss = -partial.sum() / (double)total;
  // backward: transposed operators in reverse order
  auto y = band(seed, c0.t().contiguous(), nc, l0, l1 * l2, half_band);
  y = band(y, c1.t().contiguous(), nc * l0, l1, l2, half_band);
  auto grad = band(y, c2.t().contiguous(), nc * l0 * l1, l2, 1, half_band);
  return {loss, grad};
}

}  // namespace

TORCH_LIBRARY(extremefast, m) {
  m.def("point_loss_fused(Tensor prediction, Tensor point_channel, Tensor m0, Tensor m1, Tensor m2, int half_band) -> (Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(extremefast, CUDA, m) { m.impl("point_loss_fused", &point_loss_fused); }

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {}
