/** Augmentation parameters of the two views (METHOD.md §2). */
export interface ViewOptions {
  size: number;
  cropScale: [number, number];
  cropAspect: [number, number];
  jitterProbability: number;
  brightness: number;
  contrast: number;
  blurProbability: number;
  blurSigma: [number, number];
  rotationDegrees: number;
  /** Normalisation: (x - mean) / std. */
  mean: number;
  std: number;
}

export const DEFAULT_VIEW_OPTIONS: ViewOptions = {
  size: 224,
  cropScale: [0.2, 1],
  cropAspect: [3 / 4, 4 / 3],
  jitterProbability: 0.8,
  brightness: 0.4,
  contrast: 0.4,
  blurProbability: 0.5,
  blurSigma: [0.1, 2],
  rotationDegrees: 30,
  // Eden's choice: images are windowed per image to [0, 1]; this centres them with unit-ish spread.
  mean: 0.5,
  std: 0.25,
};

