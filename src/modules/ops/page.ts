/**
 * The built-in operations page (`/ops`): one HTML document with inline CSS and JS, no build step,
 * no external assets. The shell carries no data; its script reads the admin JWT (from `?token=`
 * or `#token=` once, then sessionStorage), strips it from the address bar and calls
 * `GET /api/v2/admin/ops/summary` with a Bearer header every 10 seconds. Without a valid admin token
 * it shows only the sign-in note. Everything is rendered with textContent (no innerHTML), and
 * the Content-Security-Policy allows only this document's nonce-tagged script and style.
 */

/** The Content-Security-Policy for one rendering of the page. */
export function opsPageCsp(nonce: string): string {
  return [
    "default-src 'none'",
    `script-src 'nonce-${nonce}'`,
    `style-src 'nonce-${nonce}'`,
    "connect-src 'self'",
    "img-src 'self' data:",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join('; ');
}

/** Refresh period of the page, in milliseconds. */
export const OPS_REFRESH_MS = 10_000;

export function opsPageHtml(nonce: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<link rel="icon" href="data:,">
<title>sessiongate — operations</title>
<style nonce="${nonce}">${CSS}</style>
</head>
<body>
<header>
  <h1>sessiongate operations</h1>
  <span class="muted">updated <span data-testid="last-updated">—</span> · <span data-testid="refresh-status">waiting</span></span>
</header>
<main data-testid="ops-root">
  <section id="signin" data-testid="signin" hidden>
    <h2>Admin token required</h2>
    <p>Open this page as <code>/ops?token=&lt;admin JWT&gt;</code> (for example from
      <code>sessiongate auth:token --user &lt;admin id&gt;</code>), or paste the token here.
      It is kept in this tab's sessionStorage only.</p>
    <p class="error" data-testid="signin-message"></p>
    <input id="token-input" data-testid="token-input" type="password" autocomplete="off" placeholder="admin JWT" size="60">
    <button id="token-submit" data-testid="token-submit" type="button">Show</button>
  </section>

  <p class="error" data-testid="error-banner" hidden></p>
  <div id="dashboard" data-testid="dashboard" hidden>
    <section>
      <h2>Rollout</h2>
      <p class="big">Phase <span data-testid="phase"></span> <span class="muted" data-testid="phase-name"></span></p>
      <table><thead><tr><th>flag</th><th>value</th><th>verdict</th></tr></thead><tbody data-testid="flags"></tbody></table>
      <p>Next step: <span data-testid="next-step"></span></p>
      <p>Skips a step: <span data-testid="skips-step"></span></p>
    </section>
    <div class="grid">
      <section>
        <h2>Backlog <span class="level" data-testid="backlog-level"></span></h2>
        <p class="big"><span data-testid="due-count"></span> due</p>
        <p><span data-testid="due-sustained"></span> due for 5 min or more ·
           <span data-testid="due-given-up"></span> given up ·
           <span data-testid="due-retrying"></span> retrying ·
           <span data-testid="due-beyond-lateness"></span> beyond lateness</p>
        <p>Trend (last hour): <span data-testid="backlog-trend"></span></p>
        <div class="bars" data-testid="backlog-trend-bars"></div>
      </section>
      <section>
        <h2>Conversions, last hour <span class="level" data-testid="error-rate-level"></span></h2>
        <p class="big"><span data-testid="conversions-created-1h"></span> created ·
          <span data-testid="conversions-failed-1h"></span> failed ·
          <span data-testid="conversions-skipped-1h"></span> skipped</p>
        <p>Error rate: <span data-testid="error-rate-10m"></span> (10 min) ·
           <span data-testid="error-rate-5m"></span> (5 min) ·
           last minute <span data-testid="created-1m"></span> created / <span data-testid="failed-1m"></span> failed</p>
        <div class="bars" data-testid="conversion-bars"></div>
        <table><thead><tr><th>failure reason</th><th class="num">count</th></tr></thead><tbody data-testid="failures-by-reason"></tbody></table>
      </section>
    </div>
    <section>
      <h2>Waiting, stale and ended, last 24 h</h2>
      <p><span data-testid="deferred-waiting"></span> deferred now (patient in another session; oldest
         <span data-testid="deferred-oldest"></span>) · <span data-testid="deferred-24h"></span> deferrals ·
         <span data-testid="stale-count"></span> stale (past lateness, missed after <span data-testid="stale-days"></span> d) ·
         settled: <span data-testid="stale-missed-24h"></span> missed, <span data-testid="pending-expired-24h"></span> expired</p>
      <p><span data-testid="sessions-ended-total"></span> sessions ended</p>
      <table><thead><tr><th>end reason</th><th class="num">sessions</th></tr></thead><tbody data-testid="ended-by-reason"></tbody></table>
    </section>
    <section>
      <h2>Guard events, last 24 h</h2>
      <p>chat: <span data-testid="chat-would-block"></span> would-block ·
         <span data-testid="chat-blocked"></span> blocked ·
         billing: <span data-testid="billing-would-block"></span> would-block ·
         <span data-testid="billing-blocked"></span> blocked</p>
      <table><thead><tr><th>guard</th><th>operation</th><th class="num">would-block</th><th class="num">blocked</th><th class="num">allowed legacy</th><th class="num">not ready</th></tr></thead>
        <tbody data-testid="guard-events"></tbody></table>
      <h3>Legacy triggers, last 24 h</h3>
      <table><thead><tr><th>command</th><th class="num">runs</th><th class="num">runs that processed</th><th class="num">appointments</th><th>last run</th></tr></thead>
        <tbody data-testid="legacy-triggers"></tbody></table>
    </section>
    <section>
      <h2>Recent job runs</h2>
      <table><thead><tr><th>started</th><th>job</th><th>status</th><th class="num">ms</th><th class="num">selected</th><th class="num">created</th><th class="num">skipped</th><th class="num">failed</th></tr></thead>
        <tbody data-testid="job-runs"></tbody></table>
    </section>
  </div>
</main>
<script nonce="${nonce}">${SCRIPT.replace('__REFRESH_MS__', String(OPS_REFRESH_MS))}</script>
</body>
</html>
`;
}

const CSS = `
  :root { font-family: system-ui, sans-serif; color: #1d2430; background: #f5f6f8; }
  body { margin: 0; }
  header { display: flex; align-items: baseline; gap: 1rem; padding: .75rem 1.25rem; background: #1d2430; color: #fff; }
  header h1 { font-size: 1.1rem; margin: 0; }
  header .muted { color: #b8c0cc; }
  main { padding: 1rem 1.25rem; }
  .grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(380px, 1fr)); gap: 1rem; }
  section { background: #fff; border: 1px solid #dde1e6; border-radius: 6px; padding: .75rem 1rem; margin-bottom: 1rem; }
  h2 { font-size: 1rem; margin: 0 0 .5rem; }
  h3 { font-size: .9rem; margin: .75rem 0 .25rem; }
  .big { font-size: 1.4rem; margin: .25rem 0; }
  .muted { color: #5b6573; font-size: .9rem; }
  table { border-collapse: collapse; width: 100%; font-size: .85rem; }
  th, td { text-align: left; padding: .2rem .4rem; border-bottom: 1px solid #eef0f3; vertical-align: top; overflow-wrap: break-word; }
  th { white-space: nowrap; font-weight: 600; }
  section { overflow-x: auto; }
  td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
  .level { font-size: .75rem; padding: .1rem .4rem; border-radius: 3px; text-transform: uppercase; }
  .level-ok { background: #d8f3df; color: #17612d; }
  .level-warning { background: #fff1c7; color: #7a5300; }
  .level-critical { background: #ffd9d6; color: #8f1d12; }
  .error { color: #8f1d12; }
  .bars { display: flex; align-items: flex-end; gap: 3px; height: 60px; margin: .5rem 0; }
  .bar { flex: 1; background: #4c7bd9; min-height: 1px; position: relative; }
  .bar.failed { background: #d9534c; }
  .bar-group { flex: 1; display: flex; align-items: flex-end; gap: 1px; height: 100%; }
  code { background: #eef0f3; padding: 0 .25rem; }
`;

// Plain ES2020 for the browser; kept free of template literals so it can live inside one here.
const SCRIPT = `
(function () {
  'use strict';
  var KEY = 'sessiongate.ops.token';
  var REFRESH_MS = __REFRESH_MS__;
  var timer = null;

  function $(id) { return document.querySelector('[data-testid="' + id + '"]'); }
  function setText(id, v) { var el = $(id); if (el) el.textContent = String(v); }
  function pct(r) { return (r * 100).toFixed(2) + ' %'; }
  function time(s) { return s ? new Date(s).toISOString().replace('T', ' ').replace(/\\.\\d+Z$/, 'Z') : '—'; }
  function clear(el) { while (el.firstChild) el.removeChild(el.firstChild); }
  function cell(tr, v, cls) { var td = document.createElement('td'); td.textContent = String(v); if (cls) td.className = cls; tr.appendChild(td); return td; }
  function row(tbody, testid, values, attrs) {
    var tr = document.createElement('tr');
    tr.setAttribute('data-testid', testid);
    Object.keys(attrs || {}).forEach(function (k) { tr.setAttribute(k, attrs[k]); });
    values.forEach(function (v) { cell(tr, v, typeof v === 'number' ? 'num' : ''); });
    tbody.appendChild(tr);
    return tr;
  }
  function level(id, l) { var el = $(id); el.textContent = l; el.className = 'level level-' + l; }
  function bars(id, values, cls) {
    var el = $(id); clear(el);
    var max = Math.max.apply(null, values.map(function (v) { return v.total; }).concat([1]));
    values.forEach(function (v) {
      var group = document.createElement('div'); group.className = 'bar-group'; group.title = v.title;
      v.parts.forEach(function (p, i) {
        var b = document.createElement('div');
        b.className = 'bar' + (cls[i] ? ' ' + cls[i] : '');
        b.style.height = Math.round((p / max) * 100) + '%';
        group.appendChild(b);
      });
      el.appendChild(group);
    });
  }

  function takeTokenFromAddress() {
    var url = new URL(window.location.href);
    var token = url.searchParams.get('token');
    var hash = new URLSearchParams(url.hash.replace(/^#/, ''));
    if (!token && hash.get('token')) token = hash.get('token');
    if (token) {
      sessionStorage.setItem(KEY, token);
      url.searchParams.delete('token');
      // Never leave the token in the address bar, the history or a bookmark.
      window.history.replaceState(null, '', url.pathname + (url.searchParams.toString() ? '?' + url.searchParams : ''));
    }
  }

  function showSignin(message) {
    $('dashboard').hidden = true;
    $('error-banner').hidden = true;
    $('signin').hidden = false;
    setText('signin-message', message || '');
    setText('refresh-status', 'signed out');
  }

  function render(d) {
    var m = d.monitor, r = d.rollout, c = d.conversions_last_hour;
    setText('phase', r.phase); setText('phase-name', '(' + r.phase_name + ')');
    var flags = $('flags'); clear(flags);
    r.flag_status.forEach(function (f) {
      row(flags, 'flag-' + f.flag, [f.flag, String(f.value), f.verdict], { 'data-flag': f.flag, 'data-value': String(f.value) });
    });
    setText('next-step', r.order.next_step ? r.order.next_step.flag + '=' + r.order.next_step.set_to + ' — ' + r.order.next_step.verdict : 'none (phase 3)');
    setText('skips-step', r.order.skips_step ? 'yes: ' + r.order.skipped_steps.join(', ') + ' is off' : 'no');

    level('backlog-level', m.backlog.level);
    setText('due-count', m.due.count); setText('due-sustained', m.due.due_for_5m);
    setText('due-given-up', m.due.given_up); setText('due-retrying', m.due.retrying);
    setText('due-beyond-lateness', m.due.beyond_lateness);
    setText('backlog-trend', d.backlog_trend.direction);
    bars('backlog-trend-bars', d.backlog_trend.points.map(function (p) { return { total: p.due, parts: [p.due], title: time(p.at) + ': ' + p.due + ' due' }; }), ['']);

    level('error-rate-level', m.error_rate_alert.level);
    setText('conversions-created-1h', c.created); setText('conversions-failed-1h', c.failed); setText('conversions-skipped-1h', c.skipped);
    setText('error-rate-10m', pct(m.error_rate.last_10m)); setText('error-rate-5m', pct(m.error_rate.last_5m));
    setText('created-1m', m.conversions.last_1m.created); setText('failed-1m', m.conversions.last_1m.failed);
    bars('conversion-bars', c.buckets.map(function (b) { return { total: b.created + b.failed, parts: [b.created, b.failed], title: time(b.start) + ': ' + b.created + ' created, ' + b.failed + ' failed' }; }), ['', 'failed']);
    var reasons = $('failures-by-reason'); clear(reasons);
    c.failures_by_reason.forEach(function (f) { row(reasons, 'failure-reason', [f.reason, f.count], { 'data-reason': f.reason }); });

    setText('deferred-waiting', m.deferred.waiting); setText('deferred-oldest', time(m.deferred.oldest_scheduled_at));
    setText('deferred-24h', m.deferred.deferrals);
    setText('stale-count', m.stale.count); setText('stale-days', m.stale.missed_after_days);
    setText('stale-missed-24h', m.stale.missed); setText('pending-expired-24h', m.stale.pending_expired);
    setText('sessions-ended-total', m.sessions_ended.total);
    var ended = $('ended-by-reason'); clear(ended);
    m.sessions_ended.by_reason.forEach(function (e) { row(ended, 'ended-reason', [e.end_reason, e.count], { 'data-reason': e.end_reason }); });

    setText('chat-would-block', m.guards.chat.would_block); setText('chat-blocked', m.guards.chat.blocked);
    setText('billing-would-block', m.guards.billing.would_block); setText('billing-blocked', m.guards.billing.blocked);
    var guards = $('guard-events'); clear(guards);
    ['chat', 'billing'].forEach(function (g) {
      m.guards[g].by_operation.forEach(function (o) {
        row(guards, 'guard-row', [g, o.operation, o.would_block, o.blocked, o.allowed_legacy, o.not_ready], { 'data-guard': g, 'data-operation': o.operation });
      });
    });
    var legacy = $('legacy-triggers'); clear(legacy);
    m.legacy_triggers.commands.forEach(function (l) {
      row(legacy, 'legacy-trigger', [l.command_name, l.runs, l.runs_processing, l.appointments_processed, time(l.last_run_at)], { 'data-command': l.command_name });
    });
    var runs = $('job-runs'); clear(runs);
    d.recent_job_runs.forEach(function (j) {
      row(runs, 'job-run', [time(j.started_at), j.job, j.status, j.duration_ms == null ? '—' : j.duration_ms, j.selected, j.created, j.skipped, j.failed], { 'data-run-id': j.run_id });
    });
    setText('last-updated', time(d.generated_at));
  }

  function schedule() { clearTimeout(timer); timer = setTimeout(load, REFRESH_MS); }

  function load() {
    var token = sessionStorage.getItem(KEY);
    if (!token) { showSignin(''); return; }
    setText('refresh-status', 'refreshing');
    fetch('/api/v2/admin/ops/summary', { headers: { authorization: 'Bearer ' + token }, cache: 'no-store', credentials: 'omit' })
      .then(function (res) {
        if (res.status === 401 || res.status === 403) {
          sessionStorage.removeItem(KEY);
          showSignin(res.status === 401 ? 'The token is invalid or expired.' : 'This token does not belong to an admin.');
          return null;
        }
        if (!res.ok) throw new Error('HTTP ' + res.status);
        return res.json();
      })
      .then(function (body) {
        if (!body) return;
        render(body.data);
        $('signin').hidden = true;
        $('dashboard').hidden = false;
        $('error-banner').hidden = true;
        setText('refresh-status', 'auto-refresh every ' + (REFRESH_MS / 1000) + ' s');
        schedule();
      })
      .catch(function (err) {
        var banner = $('error-banner');
        banner.textContent = 'Could not refresh: ' + err.message + ' (showing the last data; retrying)';
        banner.hidden = false;
        setText('refresh-status', 'error');
        schedule();
      });
  }

  $('token-submit').addEventListener('click', function () {
    var v = $('token-input').value.trim();
    if (!v) return;
    sessionStorage.setItem(KEY, v);
    $('token-input').value = '';
    load();
  });

  takeTokenFromAddress();
  load();
})();
`;
