import { Counter, type Metric, type Registry } from 'prom-client';

/**
 * Per-message metrics recorded as plain number additions and handed to prom-client only at scrape
 * time: a prom-client child's inc()/observe() hashes and validates its labels on every call.
 */

/** Label values as prom-client takes them. */
type LabelValues<L extends string> = Partial<Record<L, string | number>>;

/** One label value's count: `n` is added to per message, `published` is what the Counter holds. */
interface Tally {
  n: number;
  published: number;
}

/**
 * A one-label prom-client Counter fed at scrape time: `inc(value)` adds to a plain number, the
 * Counter's collect() adds what came since the previous scrape. A label value appears with its
 * first count, as with `counter.inc()`. At most `max` label values are tallied; an increment for
 * another goes to the Counter directly (prom-client's per-call cost, the count still right).
 */
export class TalliedCounter<L extends string, V extends string | number = string> {
  readonly counter: Counter<L>;
  private readonly label: L;
  private readonly byValue = new Map<V, Tally>();

  constructor(
    registry: Registry,
    config: { readonly name: string; readonly help: string; readonly label: L },
    private readonly max = 64,
  ) {
    const publish = (): void => this.publish();
    this.counter = new Counter({
      name: config.name,
      help: config.help,
      labelNames: [config.label],
      registers: [registry],
      collect() {
        publish();
      },
    });
    this.label = config.label;
  }

  inc(value: V): void {
    const t = this.byValue.get(value);
    if (t !== undefined) t.n++;
    else if (this.byValue.size < this.max) this.byValue.set(value, { n: 1, published: 0 });
    else this.counter.inc(this.labels(value));
  }

  private labels(value: V): LabelValues<L> {
    const labels: LabelValues<L> = {};
    labels[this.label] = value;
    return labels;
  }

  private publish(): void {
    for (const [value, t] of this.byValue) {
      if (t.n === t.published) continue;
      this.counter.inc(this.labels(value), t.n - t.published);
      t.published = t.n;
    }
  }
}

/** One label set of a BucketHistogram: bucket counts (not cumulative), sum and count. */
export class HistogramSeries {
  /** counts[i]: observations in (bounds[i-1], bounds[i]]; those above every bound are only in `count`. */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  constructor(
    readonly labels: Readonly<Record<string, string>>,
    private readonly bounds: readonly number[],
  ) {
    this.counts = new Float64Array(bounds.length);
  }

  observe(value: number): void {
    if (!Number.isFinite(value)) throw new TypeError(`Value is not a valid number: ${value}`);
    const b = this.bounds;
    let i = 0;
    while (i < b.length && value > b[i]!) i++;
    if (i < b.length) this.counts[i]!++;
    this.sum += value;
    this.count++;
  }
}

/** A histogram's scrape: what prom-client's Histogram.get() returns (le splayed into the labels). */
export interface HistogramData {
  readonly name: string;
  readonly help: string;
  readonly type: 'histogram';
  readonly aggregator: 'sum';
  readonly values: { labels: Readonly<Record<string, string | number>>; value: number; metricName: string }[];
}

/**
 * A histogram kept as plain bucket counts, registered in the registry as its own metric object
 * (the registry reads name, help, type, aggregator and get(); reset() is what resetMetrics calls).
 * Same exposition as a prom-client Histogram of the same name, labels and buckets: per label set,
 * in order of first use, the cumulative `_bucket` lines (`le` first), `+Inf`, `_sum` and `_count`.
 * Series are created on first use and kept: callers keep label values bounded.
 */
export class BucketHistogram<L extends string> {
  readonly name: string;
  readonly help: string;
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  private readonly labelNames: readonly L[];
  private readonly bounds: readonly number[];
  private readonly series = new Map<string, HistogramSeries>();

  constructor(registry: Registry, config: { readonly name: string; readonly help: string; readonly labelNames: readonly L[]; readonly buckets: readonly number[] }) {
    this.name = config.name;
    this.help = config.help;
    this.labelNames = config.labelNames;
    this.bounds = [...config.buckets];
    // the registry only reads the members above; its type lists prom-client's own classes
    registry.registerMetric(this as unknown as Metric);
  }

  /** The series of one label set (values in labelNames order), created on first use. */
  labels(...values: string[]): HistogramSeries {
    const key = values.length === 1 ? values[0]! : values.join('\u0000');
    let s = this.series.get(key);
    if (s === undefined) {
      if (values.length !== this.labelNames.length) throw new Error(`${this.name}: ${this.labelNames.length} label values expected`);
      const labels: Record<string, string> = {};
      this.labelNames.forEach((l, i) => (labels[l] = values[i]!));
      s = new HistogramSeries(labels, this.bounds);
      this.series.set(key, s);
    }
    return s;
  }

  async get(): Promise<HistogramData> {
    const values: HistogramData['values'] = [];
    const bucket = `${this.name}_bucket`;
    for (const s of this.series.values()) {
      let acc = 0;
      this.bounds.forEach((le, i) => {
        acc += s.counts[i]!;
        values.push({ labels: { le, ...s.labels }, value: acc, metricName: bucket });
      });
      values.push({ labels: { le: '+Inf', ...s.labels }, value: s.count, metricName: bucket });
      values.push({ labels: { ...s.labels }, value: s.sum, metricName: `${this.name}_sum` });
      values.push({ labels: { ...s.labels }, value: s.count, metricName: `${this.name}_count` });
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }

  /** Zeroes every series (they stay, as the callers may hold them). */
  reset(): void {
    for (const s of this.series.values()) {
      s.counts.fill(0);
      s.sum = 0;
      s.count = 0;
    }
  }
}
