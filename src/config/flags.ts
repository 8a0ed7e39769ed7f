/**
 * The four rollout flags, evaluated through OpenFeature so a team can later swap the environment
 * provider for flagd or Unleash without touching call sites. Values come from the environment
 * and `.env`; `reload()` (wired to SIGHUP) re-reads them without a restart. A reload with an
 * invalid value keeps the previous flags: a typo must not flip enforcement in a running process.
 */
import { randomUUID } from 'node:crypto';
import {
  OpenFeature,
  ProviderEvents,
  OpenFeatureEventEmitter,
  type Client,
  type JsonValue,
  type Provider,
  type ResolutionDetails,
} from '@openfeature/server-sdk';
import { FLAG_NAMES, derivePhase, parseBooleanValue, type FlagName, type FlagSet, type RolloutPhase } from './flag-values.js';

export function flagsFromEnv(src: Record<string, string | undefined>): { flags: FlagSet; problems: string[] } {
  const problems: string[] = [];
  const flags = {} as FlagSet;
  for (const name of FLAG_NAMES) {
    const v = parseBooleanValue(src[name]);
    if (v === 'invalid') problems.push(`${name} must be one of true/false/1/0/yes/no/on/off (got "${src[name]}")`);
    flags[name] = v === true;
  }
  return { flags, problems };
}

/** An OpenFeature provider that serves a snapshot of environment-derived flag values. */
class EnvironmentFlagProvider implements Provider {
  readonly metadata = { name: 'sessiongate-environment' } as const;
  readonly runsOn = 'server' as const;
  readonly events = new OpenFeatureEventEmitter();
  constructor(public snapshot: FlagSet) {}

  async resolveBooleanEvaluation(flagKey: string, defaultValue: boolean): Promise<ResolutionDetails<boolean>> {
    if (!(FLAG_NAMES as readonly string[]).includes(flagKey)) return { value: defaultValue, reason: 'DEFAULT' };
    return { value: this.snapshot[flagKey as FlagName], reason: 'STATIC' };
  }
  async resolveStringEvaluation(_k: string, d: string): Promise<ResolutionDetails<string>> {
    return { value: d, reason: 'DEFAULT' };
  }
  async resolveNumberEvaluation(_k: string, d: number): Promise<ResolutionDetails<number>> {
    return { value: d, reason: 'DEFAULT' };
  }
  async resolveObjectEvaluation<T extends JsonValue>(_k: string, d: T): Promise<ResolutionDetails<T>> {
    return { value: d, reason: 'DEFAULT' };
  }
}

export type FlagsListener = (flags: FlagSet, phase: RolloutPhase) => void;

export class FlagService {
  private readonly provider: EnvironmentFlagProvider;
  private readonly client: Client;
  private readonly listeners: FlagsListener[] = [];

  /** `readSource` is called at construction and on every `reload()`. */
  constructor(private readonly readSource: () => Record<string, string | undefined>) {
    const { flags, problems } = flagsFromEnv(readSource());
    if (problems.length > 0) throw new Error(`Invalid feature flags:\n  - ${problems.join('\n  - ')}`);
    this.provider = new EnvironmentFlagProvider(flags);
    // A domain per instance: several apps (tests, CLI) can live in one process without sharing.
    const domain = `sessiongate-${randomUUID()}`;
    OpenFeature.setProvider(domain, this.provider);
    this.client = OpenFeature.getClient(domain);
  }

  /** Evaluates all four flags through OpenFeature. */
  async current(): Promise<FlagSet> {
    const out = {} as FlagSet;
    for (const name of FLAG_NAMES) out[name] = await this.client.getBooleanValue(name, false);
    return out;
  }

  /** The last loaded values without an evaluation (metrics, logs). */
  snapshot(): FlagSet {
    return { ...this.provider.snapshot };
  }

  phase(): RolloutPhase {
    return derivePhase(this.provider.snapshot);
  }

  onChange(listener: FlagsListener): void {
    this.listeners.push(listener);
  }

  /** Re-reads the source; returns the problems (and keeps the old values) when it is invalid. */
  reload(): { changed: boolean; problems: string[]; flags: FlagSet } {
    const { flags, problems } = flagsFromEnv(this.readSource());
    if (problems.length > 0) return { changed: false, problems, flags: this.snapshot() };
    return { changed: this.set(flags), problems: [], flags };
  }

  /** Replaces the values (reload, and tests that walk the rollout). */
  set(flags: Partial<FlagSet>): boolean {
    const next = { ...this.provider.snapshot, ...flags };
    const changed = FLAG_NAMES.some((n) => next[n] !== this.provider.snapshot[n]);
    this.provider.snapshot = next;
    if (changed) {
      this.provider.events.emit(ProviderEvents.ConfigurationChanged, { flagsChanged: [...FLAG_NAMES] });
      for (const l of this.listeners) l(this.snapshot(), this.phase());
    }
    return changed;
  }

  async close(): Promise<void> {
    // Domain-scoped providers are cleared with the global API only at process end; nothing to do.
  }
}
