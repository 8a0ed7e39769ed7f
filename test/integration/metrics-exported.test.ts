/**
 * The alert rules, the Grafana dashboard and ops/metric-names.json name metrics; every one of them
 * must be exported by the service's /metrics, so a renamed metric cannot silently leave an alert
 * that never fires or a panel that stays empty.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runJobOnce } from '../../src/modules/jobs/scheduler.js';
import { CHAT_OPERATIONS } from '../../src/modules/guard/decision.js';
import { createHarness, type TestHarness } from '../helpers/app.js';

const ROOT = join(import.meta.dirname, '..', '..');
const read = (p: string) => readFileSync(join(ROOT, p), 'utf8');

/** `expr: |` blocks (and one-line `expr:` values) of a Prometheus rules file. */
function ruleExpressions(yaml: string): string[] {
  const out: string[] = [];
  const lines = yaml.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const m = /^(\s*)expr:\s*(.*)$/.exec(lines[i]!);
    if (!m) continue;
    const indent = m[1]!.length;
    const rest = m[2]!.trim();
    if (rest !== '|' && rest !== '>' && rest !== '|-' && rest !== '>-') {
      out.push(rest.replace(/^['"]|['"]$/g, ''));
      continue;
    }
    const block: string[] = [];
    while (i + 1 < lines.length && (lines[i + 1]!.trim() === '' || lines[i + 1]!.search(/\S/) > indent)) block.push(lines[++i]!);
    out.push(block.join('\n'));
  }
  return out;
}

/** Every `expr` of every panel target of a Grafana dashboard. */
function dashboardExpressions(dashboard: unknown): string[] {
  const out: string[] = [];
  const walk = (v: unknown) => {
    if (Array.isArray(v)) v.forEach(walk);
    else if (v && typeof v === 'object') {
      for (const [k, x] of Object.entries(v)) {
        if (k === 'expr' && typeof x === 'string') out.push(x);
        else walk(x);
      }
    }
  };
  walk(dashboard);
  return out;
}

const PROMQL_WORDS = new Set([
  'by',
  'without',
  'on',
  'ignoring',
  'group_left',
  'group_right',
  'bool',
  'and',
  'or',
  'unless',
  'offset',
  'inf',
  'nan',
]);

/**
 * Metric names referenced by a PromQL expression: identifiers that are not functions or
 * aggregations (followed by "("), keywords, label names (inside {…} and by/without (…)),
 * strings, range selectors or Grafana variables.
 */
function metricNamesIn(expr: string): string[] {
  const e = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'/g, '""')
    .replace(/\$\{?\w+\}?/g, ' ')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ')
    .replace(/\boffset\s+-?\d+[smhdwy]+/g, ' ')
    .replace(/\b\d+(\.\d+)?([eE][+-]?\d+)?[smhdwy]*\b/g, ' ');
  const names = new Set<string>();
  for (const m of e.matchAll(/([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?/g)) {
    if (m[2] || PROMQL_WORDS.has(m[1]!.toLowerCase())) continue;
    names.add(m[1]!);
  }
  return [...names];
}

/** Sample names in a Prometheus text exposition (histograms give _bucket, _sum, _count). */
function exportedSamples(text: string): Set<string> {
  const names = new Set<string>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    names.add(/^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line)![0]);
  }
  return names;
}

let t: TestHarness;
beforeAll(async () => {
  t = await createHarness();
});
afterAll(async () => t?.close());

describe('metrics named by alerts, dashboard and metric-names.json', () => {
  const alertNames = ruleExpressions(read('ops/prometheus/alerts.yml')).flatMap(metricNamesIn);
  const dashboardNames = dashboardExpressions(JSON.parse(read('ops/grafana/sessiongate.json'))).flatMap(metricNamesIn);
  const listed = JSON.parse(read('ops/metric-names.json')) as string[];

  it('finds the metric names in the rule and dashboard expressions', () => {
    expect(ruleExpressions(read('ops/prometheus/alerts.yml')).length).toBeGreaterThanOrEqual(8);
    expect(alertNames).toEqual(
      expect.arrayContaining([
        'chat_blocked_session_context_required_total',
        'chat_operations_total',
        'billing_blocked_session_context_required_total',
        'legacy_trigger_session_appointments_touched_total',
        'appointments_due_count',
        'appointment_sessions_created_total',
        'appointment_session_conversion_failed_total',
      ]),
    );
    expect(dashboardNames).toContain('rollout_phase');
    expect(metricNamesIn('sum by (le, route) (rate(x_bucket{a="b"}[5m] offset 1h)) / on (job) y > 0.1')).toEqual(['x_bucket', 'y']);
  });

  it('are all exported by GET /metrics', async () => {
    // The job-duration histogram has a job_name label and appears with the first run a process
    // makes; run one through the scheduler's recorder, as the worker does.
    await runJobOnce(t.ctx, { name: 'metrics-probe', intervalSeconds: () => 60, run: async () => ({}) });
    // Likewise the HTTP RED metrics are labelled by route and appear with the first request.
    await t.app.inject('/health/live');
    const res = await t.app.inject('/metrics');
    expect(res.statusCode).toBe(200);
    const exported = exportedSamples(res.body);
    const wanted = [...new Set([...listed, ...alertNames, ...dashboardNames])].sort();
    const missing = wanted.filter((n) => !exported.has(n) && !['_bucket', '_sum', '_count'].some((s) => exported.has(`${n}${s}`)));
    expect(missing).toEqual([]);
  });

  it('exports the guard and conversion counters at 0 before the first event, with closed label sets only', async () => {
    const body = (await t.app.inject('/metrics')).body;
    for (const operation of CHAT_OPERATIONS) {
      expect(body).toContain(`chat_blocked_session_context_required_total{operation="${operation}",enforced="true"} 0`);
      expect(body).toContain(`chat_operations_total{operation="${operation}",path="legacy"} 0`);
    }
    expect(body).toContain('billing_blocked_session_context_required_total{endpoint="end-session",enforced="true"} 0');
    expect(body).toContain('legacy_trigger_session_appointments_touched_total{command_name="appointments:process-sessions"} 0');
    expect(body).toContain('appointment_session_conversion_failed_total{reason="unknown_error"} 0');
    expect(body).toContain('appointment_sessions_created_total{modality="video",source="auto_start"} 0');
    expect(body).not.toMatch(/(appointment|session|user)_id="/);
  });
});
