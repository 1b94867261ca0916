/**
 * Eden's public API, listed name by name. Layers: core -> config -> engine -> data -> anatomy ->
 * models -> ssl -> train -> embed / interop -> report. Tensors are NHWC throughout.
 */
export { VERSION } from './version.js';

// core
export { EdenError, type EdenErrorKind } from './core/errors.js';
export { Rng } from './core/rng.js';

// engine
export { useBackend, ensureBackend, BACKENDS, type BackendName, type BackendOptions } from './engine/backend.js';
export { probeWebGpuAdapter, webGpuAdapterDescription } from './engine/webgpu.js';
export { webGpuSubgroupSizes } from './engine/webgpu-subgroups.js';
export { timeGpuPasses, type GpuPassTime } from './engine/webgpu-timing.js';
export { tuneWebGpuConvolutions, describeConvTuning, type ConvTuning } from './engine/webgpu-conv-tune.js';
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
export { detectFormat, hasDicomBytes, fileStem, RASTER_EXTENSIONS, DICOM_EXTENSIONS, type ImageFormat } from './data/formats.js';
export { scanDataset, maskFile, type ScanResult, type ScanOptions, type ImageEntry, type MaskSource, type MaskTableSummary, type SkippedFile, type SkipCategory } from './data/scan.js';
export { readManifest, labelsFor, type Manifest } from './data/manifest.js';
export { readMaskTable, decodeRunLengthMask, parseRowCondition, RUN_ORDERS, type RunOrder, type RunLengthMask, type MaskTable, type RowCondition } from './data/mask-table.js';
export { ImageDataset, binarizeMask, maskThreshold, maskSizeProblem, readMaskOf, type ImageDatasetOptions, type Sample, type CacheMode } from './data/dataset.js';
export { inspectDataset, formatInspectReport, type InspectReport } from './data/inspect.js';

// models
export { ParameterStore, batchNorm, batchNormTrain, type ForwardContext } from './models/layers.js';
export { ResNet, createBackbone, BACKBONES, type ResNetArgs, type BackboneOutput } from './models/resnet.js';

// models: encoder and its files
export { Encoder, type EncoderArgs } from './models/encoder.js';
export { saveEncoder, loadEncoder, ENCODER_FORMAT, type EncoderFileMeta } from './models/encoder-file.js';
export { encoderFromTfjs, type TfjsEncoderManifest } from './models/encoder-tfjs.js';

// config
export { resolvePretrainConfig, parseAssignment, stageEpochs, scaledLearningRate, PRESET_NAMES, type PretrainConfig, type PresetName } from './config/pretrain.js';
export { DEFAULT_VIEW_OPTIONS, type ViewOptions } from './config/views.js';

// anatomy
export { decompose, gridShape, sampleAnchor, type Part, type AnchorOptions } from './anatomy/decomposer.js';
export { drawParts } from './anatomy/draw.js';
export { makeView, randomResizedCropBox, gaussianBlur, rotate } from './data/views.js';

// ssl
export { infoNce, pruneMask, l2Normalize, type InfoNceOptions, type InfoNceResult } from './ssl/loss.js';
export { MemoryQueue } from './ssl/queue.js';
export { updateMomentum, copyVariables } from './ssl/momentum.js';

// train
export { adamStep, adamLoss, teacherKeys, AdamStepRunner, type StepInputs, type StepSettings, type StepMetrics } from './train/adam-step.js';
export { SgdMomentum, cosineLearningRate } from './train/optimizer.js';
export { pretrain, checkpointPaths, type PretrainHooks, type PretrainOptions, type PretrainResult, type StepEvent, type EpochEvent } from './train/pretrain.js';
export { saveCheckpoint, readCheckpoint, restoreState, CHECKPOINT_FORMAT, type CheckpointMeta, type TrainingPosition, type TrainingState } from './train/checkpoint.js';
export { diffCheckpoints, formatCheckpointDiff, type CheckpointDiff } from './train/checkpoint-diff.js';
export { epochOrder, viewBatches, imageViews, batchesPerEpoch } from './train/view-batches.js';

// engine: native kernels
export { nativeStatus, loadNative, registerNativeKernels } from './engine/native.js';

// embed and interop
export { embedFiles, embedBatch, embedBatches, embeddingRowsCsv, prepareImage, type EmbedOptions, type Embeddings, type EmbeddedBatch, type Preprocess } from './embed/embed.js';
export { embedToFile, type EmbedSettings } from './embed/embedding-file.js';
export { importTorchCheckpoint, findStateDict, type ImportReport } from './interop/import-torch.js';
export { readTorchFile, parseTorchFile, type TorchTensor } from './interop/torch-file.js';
export { unpickle, PickleError, PyTuple, PyObject, type PyValue } from './interop/pickle.js';
export { exportOnnx } from './interop/onnx.js';
export { exportSafetensors, exportTfjs, loadEncoderTfjs, torchStateDict } from './interop/export.js';

// report
export { plotLossCurve, readMetrics } from './report/loss-curve.js';
export { renderVegaLite } from './report/plot.js';

// evaluation
export { resolveEvaluateConfig, EVALUATE_PRESETS, type EvaluateConfig } from './config/evaluate.js';
export { reportMarkdown } from './eval/report.js';
export { evaluate, TASKS, SEGMENTATION_FOLDER_TASKS, type Task, type EvaluateOptions, type EvaluationReport } from './eval/evaluate.js';
export { loadSegmentationData, fewShotSegmentation, fineTuneAndTest, atlasPrediction, drawSplit, summarise, compareFewShot, type SegmentationData, type FewShotRun, type FewShotSummaryRow, type FewShotComparison, type FewShotHooks } from './eval/fewshot.js';
export { trainSegmenter, segmentationLoss, SEGMENTATION_MODES, type SegmentationMode, type SegmenterTrainingOptions, type TrainedSegmenter, type LabelledImage, type SegmenterTrainingState, type SegmenterPosition } from './train/segmenter.js';
export { earlyStopping, type EarlyStoppingOptions, type ResumableTraining } from './train/early-stopping.js';
export { normaliseInput, imageBatch } from './models/input.js';
export { pairedBootstrap, formatDifference, quantileSorted, type PairedDifference } from './eval/statistics.js';
export { parseDerived, deriveMask, DERIVED_KINDS, type DerivedStructure, type DerivedKind } from './data/derived-structures.js';
export { components, distanceTransformSquared, boundary, largestComponents, largestComponentsExtent, horizontalExtent } from './data/masks.js';
export { recalibrateBatchNorm } from './models/recalibrate.js';
export { loadClassificationData, linearProbe, fineTuneClassifier, pairedAucDifference, type ClassificationData, type ClassificationScores } from './eval/classify.js';
export { compositionality, locality, rawPixelLocality, landmarks, landmarkPatches, splitWhole, embedCrops, recalibrateOnCrops, LANDMARKS, type LocalityResult, type CompositionResult } from './eval/probes.js';
export { dice, rocAuc, knnAccuracy, silhouette, cosine, kde, mean, std, surfaceDistance } from './eval/metrics.js';
export { checkpointSource, randomSource, resolveSources, type ModelSource } from './eval/models.js';
export { UNet, type UNetArgs } from './models/unet.js';
export { augmentPair, DEFAULT_PAIRED_AUGMENT, type PairedAugmentOptions } from './data/paired-transforms.js';

// applying Eve: fine-tuning, segmenting, classifying, matching (what eden finetune, segment, classify and match run)
export { finetuneSegmentation, finetuneClassification, defaultEncoderSpec, type EncoderSpec, type FinetuneSegmentationOptions, type FinetuneClassificationOptions } from './apply/finetune.js';
export { trainingStatePath, finetuneStateMeta, FINETUNE_STATE_FORMAT, type FinetuneStateMeta } from './apply/finetune-state.js';
export { loadSegmenter, loadClassifier, taskModelMeta, SEGMENTER_FORMAT, CLASSIFIER_FORMAT, type Segmenter, type Classifier, type TaskModelMeta } from './models/task-model-file.js';
export { segmentFiles, segmentImages, measurementsCsv, type SegmentOptions, type SegmentResult, type MeasurementRow, type Measurements } from './apply/segment.js';
export { cardiothoracicRatio } from './apply/measure.js';
export { classifyFiles, classifyBatches, classifyToFile, classificationCsv, type ClassifiedImage, type ClassifyOptions } from './apply/classify.js';
export { matchAnatomy, type MatchReport } from './apply/match.js';
export { builtinModelPath, resolveModelSpec } from './models/builtin.js';
export { classFolderLabels, type ClassFolderLabel } from './data/class-folders.js';

// interfaces: the anatomy explorer's server
export { buildServer, defaultViewerDir, type ServeOptions } from './server/app.js';
