/**
 * Eden's public API, listed name by name. Layers: core -> engine -> data -> models
 * (-> anatomy -> ssl -> train -> eval in later modules). Tensors are NHWC throughout.
 */
export { VERSION } from './version.js';

// core
export { EdenError, type EdenErrorKind } from './core/errors.js';
export { Rng } from './core/rng.js';

// engine
export { useBackend, BACKENDS, type BackendName, type BackendOptions } from './engine/backend.js';
export { probeWebGpuAdapter, webGpuAdapterDescription } from './engine/webgpu.js';
export { registerWasmKernels } from './engine/wasm-kernels.js';
export { registerGradientFixes, interpolationMatrix, resizeBilinearBackward } from './engine/gradients.js';
export { saveModel, loadModel, type VariableSet } from './engine/model-io.js';
export { encodeTensorFile, decodeTensorFile, saveTensorFile, loadTensorFile, writeFileAtomic, type TensorFile, type TensorRecord } from './engine/tensor-file.js';

// data
export { decodeImageFile, decodeImageBytes } from './data/decode.js';
export { decodeDicom } from './data/dicom.js';
export type { GreyImage } from './data/grey-image.js';
export { normalizeIntensity, intensityWindow, percentiles, INTENSITY_MODES, type IntensityMode, type IntensityOptions } from './data/intensity.js';
export { resizeGrey } from './data/resize.js';
export { detectFormat, fileStem, RASTER_EXTENSIONS, DICOM_EXTENSIONS, type ImageFormat } from './data/formats.js';
export { scanDataset, type ScanResult, type ScanOptions, type ImageEntry, type SkippedFile, type SkipCategory } from './data/scan.js';
export { readManifest, labelsFor, type Manifest } from './data/manifest.js';
export { ImageDataset, binarizeMask, type ImageDatasetOptions, type Sample, type CacheMode } from './data/dataset.js';
export { inspectDataset, formatInspectReport, type InspectReport } from './data/inspect.js';

// models
export { ParameterStore, batchNorm, batchNormTrain, type ForwardContext } from './models/layers.js';
export { ResNet, createBackbone, BACKBONES, type ResNetArgs, type BackboneOutput } from './models/resnet.js';
