import { plotLossCurve } from '../src/report/loss-curve.js';
await plotLossCurve('/tmp/eden-run1/metrics.jsonl', '/tmp/eden-run1/loss.png');
