// The browser page of `extremefast serve`: six extreme-point clicks on NiiVue's three views, the mask
// back from the server, accept / redo / skip, training with its progress, the masks as a zip.
//
// One state object; `render()` draws the page from it. Every action is a REST call the server offers
// (MONAI Label's protocol, see extremefast/serve/API.md); nothing is computed here but the voxel
// indices of the clicks.
//
// Voxel order. NiiVue reorients every volume to RAS for display (NVImage.permRAS, dimsRAS); the
// server wants voxel indices of the scan as stored (the file's i, j, k). `rasToNative` and
// `nativeToRas` convert with the same permutation and flips NiiVue uses for its img2RAS step
// (ImageOrientation.calculateRAS), so a click lands on the file's voxel whatever the orientation.
import { Niivue, NVImage, SHOW_RENDER, SLICE_TYPE, MULTIPLANAR_TYPE } from '@niivue/niivue'

const NEEDED = 6
const WALKER = 'extreme_points_walker'
const MODEL = 'extreme_points_model'
const POINT_PEN = 2 // drawing colour of the click markers (NiiVue's draw colormap: 1 red, 2 green, 3 blue)
const MARKER_MM = 5 // the click markers' arm length
const CT_WINDOW = [-160, 240] // soft tissue (level 40, width 400): shown when the scan's values are Hounsfield units

const state = {
  token: new URLSearchParams(location.search).get('token') || sessionStorage.getItem('extremefast-token') || '',
  info: null,
  models: [], // the deepgrow models the server lists
  model: WALKER,
  collection: '', // the datastore's name
  cases: [], // [{id, status: 'new' | 'clicked' | 'accepted', entry}]
  caseId: null,
  clicks: [], // voxel indices (i, j, k) of the scan as stored, in click order
  mask: null, // {bytes: ArrayBuffer, name, message, clicks: the clicks it was computed from}
  maskSource: '', // 'infer' | 'saved'
  inferring: false,
  error: '',
  savedClicks: null, // the case's clicks as the server has them saved (null: none)
  accepted: null, // the id of the last case accepted here
  allDone: false, // the server said no case is left without an accepted mask
  train: null, // the last GET /train/ answer
  busy: false,
}
if (state.token) sessionStorage.setItem('extremefast-token', state.token)

const $ = (id) => document.getElementById(id)
const nv = new Niivue({
  show3Dcrosshair: false,
  multiplanarShowRender: SHOW_RENDER.NEVER,
  multiplanarLayout: MULTIPLANAR_TYPE.AUTO,
  crosshairColor: [0.3, 0.7, 1, 0.6],
  crosshairWidth: 1,
  backColor: [0, 0, 0, 1],
  isColorbar: false,
  dragAndDropEnabled: false,
  loadingText: 'loading scan...',
})
let scanVolume = null // NVImage of the open scan
let maskVolume = null // NVImage of the mask overlay
let loadSerial = 0 // guards against a slow load finishing after the annotator moved on

// ---------------------------------------------------------------- REST

function oneLine(text) {
  return String(text).replace(/\s+/g, ' ').trim().slice(0, 300)
}

async function reason(response) {
  const text = await response.text()
  try {
    const body = JSON.parse(text)
    const detail = body.detail ?? body.message ?? body.error ?? body
    if (Array.isArray(detail)) return detail.map((d) => (d.loc ? `${d.loc.join('.')}: ${d.msg}` : d.msg ?? JSON.stringify(d))).join('; ')
    return typeof detail === 'string' ? detail : JSON.stringify(detail)
  } catch {
    return text || response.statusText
  }
}

function authHeaders() {
  return state.token ? { Authorization: `Bearer ${state.token}` } : {}
}

function apiUrl(path, query = {}) {
  const url = new URL(path, location.origin)
  for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== null) url.searchParams.set(k, v)
  return url
}

async function api(method, path, { query, form, json } = {}) {
  const headers = authHeaders()
  let body
  if (form) {
    body = new FormData()
    for (const [k, v] of Object.entries(form)) {
      if (v && v.blob) body.append(k, v.blob, v.name)
      else body.append(k, v)
    }
  } else if (json !== undefined) {
    headers['Content-Type'] = 'application/json'
    body = JSON.stringify(json)
  }
  let response
  try {
    response = await fetch(apiUrl(path, query), { method, headers, body })
  } catch (e) {
    throw new Error(`${method} ${path}: the server did not answer (${e.message})`)
  }
  if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${oneLine(await reason(response))}`)
  return response
}

// ---------------------------------------------------------------- voxel indices

/** RAS voxel index (NiiVue's display grid) -> the scan's stored voxel index (i, j, k). */
export function rasToNative(vol, ras) {
  const perm = vol.permRAS
  const dims = vol.hdr.dims
  const out = [0, 0, 0]
  for (let p = 0; p < 3; p++) {
    const axis = Math.abs(perm[p]) - 1
    out[axis] = perm[p] < 0 ? dims[axis + 1] - 1 - ras[p] : ras[p]
  }
  return out
}

/** The scan's stored voxel index (i, j, k) -> RAS voxel index. */
export function nativeToRas(vol, ijk) {
  const perm = vol.permRAS
  const dims = vol.hdr.dims
  const out = [0, 0, 0]
  for (let p = 0; p < 3; p++) {
    const axis = Math.abs(perm[p]) - 1
    out[p] = perm[p] < 0 ? dims[axis + 1] - 1 - ijk[axis] : ijk[axis]
  }
  return out
}

function fracToRas(vol, frac) {
  const d = vol.dimsRAS
  return [0, 1, 2].map((p) => Math.min(d[p + 1] - 1, Math.max(0, Math.round(frac[p] * d[p + 1] - 0.5))))
}

function rasToFrac(vol, ras) {
  const d = vol.dimsRAS
  return new Float32Array([0, 1, 2].map((p) => (ras[p] + 0.5) / d[p + 1]))
}

function insideFrac(frac) {
  return frac && frac.length >= 3 && [0, 1, 2].every((p) => frac[p] >= 0 && frac[p] <= 1)
}

/** Move the crosshair to a stored voxel index (all three views show its slices). */
function showVoxel(ijk) {
  if (!scanVolume || !ijk || !ijk.every(Number.isFinite)) return
  nv.scene.crosshairPos = rasToFrac(scanVolume, nativeToRas(scanVolume, ijk))
  nv.drawScene()
}

// ---------------------------------------------------------------- clicks

/** The one code path for a click: a mouse click in a view and the test hook both land here. */
function placePointAtFrac(frac) {
  if (!scanVolume || !state.caseId) return null
  if (state.clicks.length >= NEEDED) {
    state.error = `${NEEDED} points are placed: undo one or redo to move a point`
    render()
    return null
  }
  const ijk = rasToNative(scanVolume, fracToRas(scanVolume, frac))
  state.clicks.push(ijk)
  state.error = ''
  clearMask()
  drawPoints()
  render()
  if (state.clicks.length === NEEDED) infer()
  return ijk
}

function undo() {
  if (!state.clicks.length) return
  state.clicks.pop()
  clearMask()
  drawPoints()
  render()
}

async function redo() {
  const id = state.caseId
  state.clicks = []
  clearMask()
  drawPoints()
  render()
  if (!id || !state.savedClicks) return
  try {
    await api('DELETE', '/datastore/clicks', { query: { image: id } })
    state.savedClicks = null
    await loadCases()
  } catch (e) {
    state.error = e.message
  }
  render()
}

function drawPoints() {
  if (!scanVolume) return
  if (!nv.drawBitmap) nv.createEmptyDrawing()
  const bitmap = nv.drawBitmap
  bitmap.fill(0)
  const [, nx, ny, nz] = scanVolume.dimsRAS
  const put = (x, y, z) => {
    if (x >= 0 && y >= 0 && z >= 0 && x < nx && y < ny && z < nz) bitmap[x + nx * (y + ny * z)] = POINT_PEN
  }
  // a cross of arms about MARKER_MM long and a core about a third of it, in voxels of each axis
  const arm = [1, 2, 3].map((a) => Math.max(1, Math.round(MARKER_MM / (scanVolume.pixDimsRAS[a] || 1))))
  const core = arm.map((n) => Math.max(0, Math.round(n / 3)))
  for (const ijk of state.clicks) {
    const [x, y, z] = nativeToRas(scanVolume, ijk)
    for (let d = -arm[0]; d <= arm[0]; d++) put(x + d, y, z)
    for (let d = -arm[1]; d <= arm[1]; d++) put(x, y + d, z)
    for (let d = -arm[2]; d <= arm[2]; d++) put(x, y, z + d)
    for (let a = -core[0]; a <= core[0]; a++) for (let b = -core[1]; b <= core[1]; b++) for (let c = -core[2]; c <= core[2]; c++) put(x + a, y + b, z + c)
  }
  nv.refreshDrawing(true)
}

// ---------------------------------------------------------------- mask

function clearMask() {
  state.mask = null
  state.maskSource = ''
  if (maskVolume) {
    nv.removeVolume(maskVolume)
    maskVolume = null
  }
}

async function showMask(bytes, name) {
  const serial = loadSerial
  const vol = await NVImage.loadFromUrl({ url: name, name, buffer: bytes, colormap: 'red', opacity: 0.45, cal_min: 0, cal_max: 1 })
  if (serial !== loadSerial || !state.mask) return // the case or the clicks changed meanwhile
  if (maskVolume) nv.removeVolume(maskVolume)
  maskVolume = vol
  nv.addVolume(vol)
  nv.setOpacity(nv.volumes.indexOf(vol), 0.45)
}

async function readInferAnswer(response) {
  const type = response.headers.get('content-type') || ''
  if (type.includes('multipart/')) {
    const form = await response.formData()
    let params = {}
    let file = null
    for (const [key, value] of form.entries()) {
      if (typeof value === 'string') {
        try {
          params = { ...params, ...JSON.parse(value) }
        } catch {
          /* not JSON: ignore */
        }
      } else file = value
    }
    return { params, bytes: file ? await file.arrayBuffer() : null, name: file?.name }
  }
  if (type.includes('json')) return { params: await response.json(), bytes: null }
  const disposition = response.headers.get('content-disposition') || ''
  const name = /filename="?([^";]+)"?/.exec(disposition)?.[1]
  return { params: {}, bytes: await response.arrayBuffer(), name }
}

async function infer({ save = true } = {}) {
  const clicks = state.clicks.map((p) => p.slice())
  const caseId = state.caseId
  state.inferring = true
  render()
  const started = performance.now()
  try {
    const response = await api('POST', `/infer/${encodeURIComponent(state.model)}`, {
      query: { image: caseId },
      form: { params: JSON.stringify({ foreground: clicks, background: [], save_clicks: save }) },
    })
    const answer = await readInferAnswer(response)
    if (caseId !== state.caseId || JSON.stringify(clicks) !== JSON.stringify(state.clicks)) return // superseded
    if (answer.params.clicks_saved) {
      state.savedClicks = clicks
      const c = state.cases.find((x) => x.id === caseId)
      if (c && c.status === 'new') c.status = 'clicked'
    }
    if (!answer.bytes) throw new Error(`POST /infer/${state.model}: no mask came back${answer.params.message ? ': ' + answer.params.message : ''}`)
    const seconds = (performance.now() - started) / 1000
    const volume = answer.params.volume_ml
    const message = typeof volume === 'number' ? `${volume.toFixed(1)} ml` : ''
    state.mask = { bytes: answer.bytes, name: maskName(answer.name), message, clicks, seconds }
    state.maskSource = 'infer'
    await showMask(answer.bytes, state.mask.name)
  } catch (e) {
    state.error = e.message
  } finally {
    state.inferring = false
    render()
  }
}

function maskName(name) {
  if (name && /\.nii(\.gz)?$|\.nrrd$/i.test(name)) return name
  return 'mask.nii.gz'
}

// ---------------------------------------------------------------- cases

function caseStatus(entry) {
  if (entry?.status) return entry.status
  if (entry?.labels?.final) return 'accepted'
  return entry?.clicks ? 'clicked' : 'new'
}

async function loadCases() {
  const response = await api('GET', '/datastore/', { query: { output: 'all' } })
  const body = await response.json()
  const objects = body.objects || {}
  state.cases = Object.keys(objects)
    .sort()
    .map((id) => ({ id, status: caseStatus(objects[id]), entry: objects[id] }))
  state.collection = body.name || ''
}

async function openCase(id) {
  if (!id) return
  const serial = ++loadSerial
  state.caseId = id
  state.clicks = []
  state.savedClicks = null
  state.error = ''
  clearMask()
  scanVolume = null
  nv.drawBitmap = null
  render()
  try {
    const url = apiUrl('/datastore/image', { image: id }).toString()
    const entry = state.cases.find((c) => c.id === id)?.entry
    const name = scanFileName(id, entry)
    const vol = await NVImage.loadFromUrl({ url, name, headers: authHeaders() })
    if (serial !== loadSerial) return
    while (nv.volumes.length) nv.removeVolume(nv.volumes[0])
    if (looksLikeCT(vol)) {
      vol.cal_min = CT_WINDOW[0]
      vol.cal_max = CT_WINDOW[1]
    }
    nv.addVolume(vol)
    scanVolume = vol
    nv.createEmptyDrawing()
    nv.setDrawOpacity(1)
    await loadSaved(id, serial)
    // a case clicked before (here, in Slicer or as a markups file): its mask, without saving the clicks again
    if (serial === loadSerial && !state.mask && state.clicks.length === NEEDED) {
      drawPoints()
      infer({ save: false })
    }
  } catch (e) {
    if (serial === loadSerial) state.error = `${id}: ${e.message}`
  }
  if (serial === loadSerial) {
    drawPoints()
    render()
  }
}

/** Air near -1000 and dense tissue above 100: Hounsfield units, where a soft-tissue window shows organs. */
function looksLikeCT(vol) {
  return vol.global_min !== undefined && vol.global_min <= -900 && vol.global_max >= 100
}

/** The name NiiVue reads the served scan by (its reader goes by the suffix). A DICOM series is served
 * as NIfTI; a detached header (.nhdr, .mhd) cannot be read from one file (see web/NEEDS_FROM_SERVER.md). */
function scanFileName(id, entry) {
  const ext = String(entry?.image?.ext || '').toLowerCase()
  return `${id}${['.nii', '.nii.gz', '.nrrd', '.mha', '.nhdr', '.mhd'].includes(ext) ? ext : '.nii.gz'}`
}

/** The saved clicks and accepted mask of a case, when it has them. */
async function loadSaved(id, serial) {
  const entry = state.cases.find((c) => c.id === id)
  const response = await api('GET', '/datastore/clicks', { query: { image: id } })
  const body = await response.json()
  if (serial !== loadSerial) return
  state.savedClicks = Array.isArray(body.clicks) ? body.clicks.map((p) => p.map(Math.round)) : null
  if (state.savedClicks) state.clicks = state.savedClicks.map((p) => p.slice())
  if (entry?.status === 'accepted') {
    const response = await api('GET', '/datastore/label', { query: { label: id, tag: 'final' } })
    const bytes = await response.arrayBuffer()
    if (serial !== loadSerial) return
    state.mask = { bytes, name: 'final.nii.gz', message: 'the accepted mask', clicks: state.clicks.slice() }
    state.maskSource = 'saved'
    await showMask(bytes, 'final.nii.gz')
  }
}

function nextUnaccepted(afterId) {
  const ids = state.cases.map((c) => c.id)
  const start = ids.indexOf(afterId)
  for (let k = 1; k <= ids.length; k++) {
    const c = state.cases[(start + k) % ids.length]
    if (c.status !== 'accepted' && c.id !== afterId) return c.id
  }
  return null
}

async function accept() {
  if (!state.mask || state.clicks.length !== NEEDED || state.maskSource !== 'infer') return
  const id = state.caseId
  state.busy = true
  render()
  try {
    await api('PUT', '/datastore/clicks', { query: { image: id }, json: { clicks: state.mask.clicks } })
    await api('PUT', '/datastore/label', {
      query: { image: id, tag: 'final' },
      form: {
        label: { blob: new Blob([state.mask.bytes]), name: state.mask.name },
        params: JSON.stringify({ model: state.model }),
      },
    })
    state.accepted = id
    await loadCases()
    state.maskSource = 'saved'
    await next()
  } catch (e) {
    state.error = e.message
  } finally {
    state.busy = false
    render()
  }
}

async function next() {
  try {
    const response = await api('POST', '/activelearning/first', { json: {} })
    const body = await response.json()
    const id = body.id || body.image
    if (!id) {
      // every case has an accepted mask
      state.allDone = true
      state.error = ''
      render()
      return
    }
    state.allDone = false
    await openCase(id)
  } catch (e) {
    state.error = e.message
    render()
  }
}

async function skip() {
  const id = nextUnaccepted(state.caseId)
  if (id) await openCase(id)
  else {
    state.error = 'no other case without an accepted mask'
    render()
  }
}

// ---------------------------------------------------------------- training

let trainTimer = null

async function startTraining() {
  try {
    await api('POST', '/train/', { json: {} })
    state.error = ''
    pollTraining()
  } catch (e) {
    state.error = e.message
    render()
  }
}

async function stopTraining() {
  try {
    await api('DELETE', '/train/')
    pollTraining()
  } catch (e) {
    state.error = e.message
    render()
  }
}

function trainRunning(t) {
  return Boolean(t) && ['SUBMITTED', 'RUNNING'].includes(t.status)
}

async function pollTraining() {
  clearTimeout(trainTimer)
  try {
    const response = await api('GET', '/train/')
    const wasRunning = trainRunning(state.train)
    state.train = await response.json()
    if (wasRunning && !trainRunning(state.train)) await loadInfo()
  } catch (e) {
    state.train = /: 404 /.test(e.message) ? null : { status: 'unknown', reason: e.message }
  }
  render()
  trainTimer = setTimeout(pollTraining, trainRunning(state.train) ? 2000 : 15000)
}

function trainRows(t) {
  return t?.progress?.rows || []
}

// ---------------------------------------------------------------- info

async function loadInfo() {
  const response = await api('GET', '/info/')
  state.info = await response.json()
  state.models = Object.keys(state.info.models || {})
  if (!state.models.includes(state.model)) state.model = state.models.includes(WALKER) ? WALKER : state.models[0] || WALKER
}

// ---------------------------------------------------------------- render

function text(el, value) {
  if (el.textContent !== value) el.textContent = value
}

function render() {
  const s = state
  text($('collection'), s.info?.name ? `${s.info.name}${s.collection ? ' · ' + s.collection : ''}` : s.collection || '')
  const err = $('error')
  err.hidden = !s.error
  text(err, s.error)

  // models: the selector only when there is a choice
  const modelBox = $('model-box')
  modelBox.hidden = !s.models.includes(MODEL)
  const select = $('model')
  const options = s.models.map((m) => `<option value="${m}">${m}</option>`).join('')
  if (select.dataset.options !== options) {
    select.innerHTML = options
    select.dataset.options = options
  }
  select.value = s.model

  // case list
  const done = s.cases.filter((c) => c.status === 'accepted').length
  text($('progress'), s.cases.length ? `${done} of ${s.cases.length} accepted` : '')
  const list = $('cases')
  const html = s.cases
    .map((c) => `<li data-id="${c.id}" class="${c.id === s.caseId ? 'current' : ''}"><span>${c.id}</span><span class="status ${c.status}">${c.status}</span></li>`)
    .join('')
  if (list.dataset.html !== html) {
    list.innerHTML = html
    list.dataset.html = html
  }

  text($('case-title'), s.allDone && !s.clicks.length ? `every case has an accepted mask${s.caseId ? ' · ' + s.caseId : ''}` : s.caseId ? `${s.caseId}${scanVolume ? ` · ${scanVolume.hdr.dims.slice(1, 4).join(' × ')} voxels` : ' · loading…'}` : 'no case open')
  text($('counter'), `${s.clicks.length} of ${NEEDED}`)
  const points = $('points')
  const pts = s.clicks.map((p, k) => `<li data-k="${k}">(${p.join(', ')})</li>`).join('')
  if (points.dataset.html !== pts) {
    points.innerHTML = pts
    points.dataset.html = pts
  }
  let maskText = ''
  if (s.inferring) maskText = 'computing the mask…'
  else if (s.mask && s.maskSource === 'infer') maskText = `mask from ${s.model} in ${s.mask.seconds.toFixed(2)} s${s.mask.message ? ' · ' + s.mask.message : ''}`
  else if (s.mask) maskText = 'the accepted mask'
  else if (s.caseId && s.clicks.length < NEEDED) maskText = `${NEEDED - s.clicks.length} more point${NEEDED - s.clicks.length === 1 ? '' : 's'} for the mask`
  text($('mask-status'), maskText)

  const open = Boolean(s.caseId && scanVolume)
  $('undo').disabled = !open || !s.clicks.length || s.busy
  $('redo').disabled = !open || !s.clicks.length || s.busy
  $('accept').disabled = !open || s.busy || s.inferring || !s.mask || s.maskSource !== 'infer'
  $('skip').disabled = !s.cases.length || s.busy
  $('next').disabled = s.busy

  // training
  const t = s.train
  const fmt = (v, digits = 3) => (v === undefined || v === null ? '–' : typeof v === 'number' ? v.toFixed(digits) : String(v))
  const running = trainRunning(t)
  $('train').disabled = running
  $('stop').disabled = !running
  let line = 'no training run yet'
  if (t) {
    const bits = [String(t.status).toLowerCase()]
    const p = t.progress || {}
    if (p.round !== undefined && p.round !== null) bits.push(`round ${p.round}${p.rounds ? ' of ' + p.rounds : ''}`)
    if (t.result?.final_val_dice?.mean !== undefined) bits.push(`val Dice ${fmt(t.result.final_val_dice.mean)}`)
    if (t.reason) bits.push(oneLine(t.reason))
    else if (t.status === 'ERROR' && t.details?.length) bits.push(oneLine(t.details[t.details.length - 1]))
    if (t.status === 'STOPPED' && t.resumable) bits.push('resumable')
    line = bits.join(' · ')
  }
  text($('train-status'), line)
  const rows = trainRows(t)
  const table = rows.length
    ? '<tr><th>round</th><th>label change</th><th>pseudo Dice</th><th>val Dice</th></tr>' +
      rows
        .map((r, k) => `<tr><td>${r.round ?? k}</td><td>${fmt(r.label_change)}</td><td>${fmt(r.pseudo_label_dice)}</td><td>${fmt(r.val_dice_with_walker ?? r.val_dice)}</td></tr>`)
        .join('')
    : ''
  const tableEl = $('train-rounds')
  if (tableEl.dataset.html !== table) {
    tableEl.innerHTML = table
    tableEl.dataset.html = table
  }
}

// ---------------------------------------------------------------- wiring

function wire() {
  nv.onMouseUp = (data) => {
    if (data.mouseButtonRightDown || data.mouseButtonCenterDown) return
    if (!insideFrac(data.fracPos)) return // outside the slices
    placePointAtFrac(Array.from(data.fracPos))
  }
  $('undo').onclick = undo
  $('redo').onclick = redo
  $('accept').onclick = accept
  $('skip').onclick = skip
  $('next').onclick = next
  $('train').onclick = startTraining
  $('stop').onclick = stopTraining
  $('model').onchange = (e) => {
    state.model = e.target.value
    if (state.clicks.length === NEEDED) {
      clearMask()
      infer()
    }
    render()
  }
  $('cases').onclick = (e) => {
    const li = e.target.closest('li[data-id]')
    if (li) openCase(li.dataset.id)
  }
  $('points').onclick = (e) => {
    const li = e.target.closest('li[data-k]')
    if (li) showVoxel(state.clicks[Number(li.dataset.k)])
  }
  if (state.token) $('licences').href += `?token=${encodeURIComponent(state.token)}`
  $('download').onclick = (e) => {
    e.preventDefault()
    download()
  }
}

async function download() {
  try {
    const response = await api('GET', '/datastore/masks.zip')
    const blob = await response.blob()
    const a = document.createElement('a')
    a.href = URL.createObjectURL(blob)
    a.download = `${state.info?.name || 'extremefast'}-masks.zip`
    a.click()
    setTimeout(() => URL.revokeObjectURL(a.href), 10000)
  } catch (e) {
    state.error = e.message
    render()
  }
}

// The test hook: what a test needs to drive and read the page, through the same code paths as the mouse.
window.extremefast = {
  state,
  nv,
  ready: false,
  /** Whether the open case's scan is loaded and shown. */
  get scanLoaded() {
    return Boolean(scanVolume && state.caseId)
  },
  /** Move the crosshair to a stored voxel index. */
  showVoxel: (i, j, k) => showVoxel([i, j, k]),
  /** Place a point at a stored voxel index, as a click in a view at that voxel would. */
  clickVoxel(i, j, k) {
    const frac = rasToFrac(scanVolume, nativeToRas(scanVolume, [i, j, k]))
    nv.scene.crosshairPos = frac
    nv.drawScene()
    return placePointAtFrac(frac)
  },
  /** Show a voxel's slices and return where its centre is drawn in a view, in CSS pixels of the page. */
  voxelOnScreen(i, j, k, view = 'axial') {
    const frac = rasToFrac(scanVolume, nativeToRas(scanVolume, [i, j, k]))
    nv.scene.crosshairPos = frac
    nv.drawScene()
    const type = { axial: SLICE_TYPE.AXIAL, coronal: SLICE_TYPE.CORONAL, sagittal: SLICE_TYPE.SAGITTAL }[view]
    const hit = nv.frac2canvasPosWithTile(frac, type)
    if (!hit) return null
    const rect = nv.canvas.getBoundingClientRect()
    const scale = rect.width / nv.canvas.width
    return { x: rect.left + hit.pos[0] * scale, y: rect.top + hit.pos[1] * scale }
  },
  /** NiiVue's own reading of the crosshair: its world position (mm, RAS) and the values of the volumes there. */
  atVoxel(i, j, k) {
    const frac = rasToFrac(scanVolume, nativeToRas(scanVolume, [i, j, k]))
    const mm = Array.from(nv.frac2mm(frac, 0, true)).slice(0, 3)
    const values = nv.volumes.map((v) => {
      const [x, y, z] = fracToRas(v, v.convertMM2Frac(mm, true))
      return v.getValue(x, y, z)
    })
    return { mm, values }
  },
  rasToNative: (ras) => rasToNative(scanVolume, ras),
  nativeToRas: (ijk) => nativeToRas(scanVolume, ijk),
  undo,
  redo,
  accept,
  openCase,
  render,
}

async function main() {
  wire()
  await nv.attachTo('gl')
  nv.setSliceType(SLICE_TYPE.MULTIPLANAR)
  render()
  try {
    await loadInfo()
    await loadCases()
    render()
    if (Object.keys(state.info.train_stats || {}).length) pollTraining()
    const first = new URLSearchParams(location.search).get('case')
    if (first) await openCase(first)
    else await next()
  } catch (e) {
    state.error = e.message
  }
  render()
  window.extremefast.ready = true
}

main()
