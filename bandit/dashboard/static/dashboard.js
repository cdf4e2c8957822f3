// The dashboard's pages: the overview polls /dashboard/data/overview; an experiment's page
// follows its Server-Sent Events (/api/experiments/{name}/events) and draws with plotly.js.
// Controls call the management API with the admin token typed into the page (kept for the
// browser tab only, in sessionStorage); without it the server refuses them (401/403).
// The pages' Content Security Policy allows no inline script or style: each page names its
// part in <body data-page>, and this file starts it (see the end).
"use strict";

const mab = (() => {
  const OVERVIEW_REFRESH_MS = 2000;
  const AUDIT_REFRESH_MS = 5000;
  // A new events stream after a refused one: the service asks for 5 s (Retry-After), then
  // twice as long after each refusal in a row, up to a minute.
  const STREAM_RETRY_FIRST_MS = 5000;
  const STREAM_RETRY_MAX_MS = 60000;
  const CHART_CONFIG = { displaylogo: false, responsive: true };
  const LAYOUT = {
    margin: { l: 50, r: 20, t: 36, b: 40 },
    legend: { orientation: "h", y: -0.18 },
    font: { size: 12 },
    hovermode: "x unified",
  };

  const $ = (id) => document.getElementById(id);
  const number = (value, digits = 0) =>
    value === null || value === undefined ? "–" : Number(value).toLocaleString(undefined, {
      minimumFractionDigits: digits, maximumFractionDigits: digits,
    });
  const percent = (value, digits = 1) => (value === null || value === undefined ? "–" : `${(100 * value).toFixed(digits)} %`);
  const significant = (value) => (value === null || value === undefined ? "–" : Number(value).toPrecision(4));
  const pValue = (p) => (p === null || p === undefined ? "–" : p < 0.001 ? p.toExponential(1) : p.toFixed(3));

  function cell(row, text, className) {
    const td = row.insertCell();
    td.textContent = text;
    if (className) td.className = className;
    return td;
  }

  function badge(text, kind) {
    const span = document.createElement("span");
    span.className = `badge ${kind || text}`;
    span.textContent = text;
    return span;
  }

  // ---------------------------------------------------------------- overview
  async function overview() {
    const body = document.querySelector("#experiments tbody");
    async function refresh() {
      let experiments;
      try {
        const response = await fetch("/dashboard/data/overview");
        if (!response.ok) throw new Error(`${response.status} ${(await response.json()).detail || ""}`);
        experiments = await response.json();
        $("problem").hidden = true;
      } catch (error) {
        $("problem").textContent = `Could not load the experiments: ${error.message}`;
        $("problem").hidden = false;
        return;
      }
      body.replaceChildren();
      for (const experiment of experiments) {
        const row = body.insertRow();
        row.dataset.experiment = experiment.name;
        const link = document.createElement("a");
        link.href = `/dashboard/${encodeURIComponent(experiment.name)}`;
        link.textContent = experiment.name;
        row.insertCell().append(link);
        row.insertCell().append(badge(experiment.status));
        cell(row, experiment.policy);
        cell(row, experiment.arms.map((arm) => (arm.shadow ? `${arm.name} (shadow)` : arm.name)).join(", "));
        cell(row, number(experiment.decisions_last_minute), "number");
        cell(row, experiment.leader || "–");
        cell(row, percent(experiment.leader_p_best), "number");
        const stopping = row.insertCell();
        stopping.append(experiment.stopping_met ? badge("met") : badge("not met", "pending"));
      }
      $("empty").hidden = experiments.length > 0;
      $("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
    }
    await refresh();
    setInterval(refresh, OVERVIEW_REFRESH_MS);
  }

  // ---------------------------------------------------------------- one experiment
  function experiment(name) {
    document.title = `mab · ${name}`;
    $("name").textContent = name;
    const state = { incarnation: null, series: null, stats: null, armNames: "" };
    const base = `/api/experiments/${encodeURIComponent(name)}`;

    setUpControls(name, base, state);
    setUpWhatIf(base);
    followAudit(`/dashboard/data/experiments/${encodeURIComponent(name)}/audit`);

    follow(`${base}/events`, {
      snapshot: (event) => {
        const snapshot = JSON.parse(event.data);
        merge(state, snapshot);
        render(state, snapshot);
      },
      unavailable: (event) => {
        $("connection").textContent = `state store unavailable: ${JSON.parse(event.data).detail}`;
      },
      gone: (event) => {
        event.target.close();
        $("connection").textContent = "this experiment was deleted";
      },
    });
  }

  // EventSource reconnects by itself when a stream ends, but gives up for good when an answer
  // is not a stream: the 503 of a replica holding BANDIT_MAX_EVENT_STREAMS already, or the 502
  // of a proxy in front while the service restarts. Then a new EventSource is opened after a growing wait, with up to half
  // as much again at random so that refused pages do not all come back at once. It starts
  // without Last-Event-ID, so its first event brings the whole history, which `merge` takes.
  function follow(url, listeners) {
    let refusals = 0;
    function connect() {
      const source = new EventSource(url);
      source.addEventListener("open", () => {
        refusals = 0;
        $("connection").textContent = "live";
      });
      source.addEventListener("error", () => {
        if (source.readyState !== EventSource.CLOSED) {
          $("connection").textContent = "reconnecting…";
          return;
        }
        const wait = Math.min(STREAM_RETRY_MAX_MS, STREAM_RETRY_FIRST_MS * 2 ** refusals) * (1 + Math.random() / 2);
        refusals += 1;
        $("connection").textContent = `not connected; trying again in ${Math.round(wait / 1000)} s`;
        setTimeout(connect, wait);
      });
      for (const [type, listener] of Object.entries(listeners)) source.addEventListener(type, listener);
    }
    connect();
  }

  // Each event carries the buckets since the last one; the newest bucket comes again as it fills.
  function merge(state, snapshot) {
    const incoming = snapshot.series;
    if (state.incarnation !== snapshot.incarnation || state.series === null) {
      state.series = incoming;
      state.incarnation = snapshot.incarnation;
      return;
    }
    const series = state.series;
    incoming.t.forEach((t, i) => {
      let index = series.t.lastIndexOf(t);
      if (index < 0) {
        series.t.push(t);
        index = series.t.length - 1;
      }
      for (const [arm, columns] of Object.entries(incoming.arms)) {
        const target = (series.arms[arm] ||= Object.fromEntries(
          Object.keys(columns).map((key) => [key, new Array(series.t.length - 1).fill(null)]),
        ));
        for (const [key, values] of Object.entries(columns)) target[key][index] = values[i];
      }
    });
  }

  function render(state, snapshot) {
    const stats = snapshot.stats;
    state.stats = stats;
    $("status").replaceWith(Object.assign(badge(stats.status), { id: "status" }));
    $("policy").textContent = stats.policy;
    $("leader").textContent = stats.leader ? `leader: ${stats.leader}` : "no leader yet";
    const stopping = stats.stopping.met ? badge(`stopping rule met: ${stats.stopping.arm}`, "met") : badge("stopping rule not met", "pending");
    $("stopping").replaceWith(Object.assign(stopping, { id: "stopping" }));
    $("total-decisions").textContent = number(stats.totals.decisions);
    $("total-rewards").textContent = number(stats.totals.rewards);
    $("regret").textContent = number(snapshot.estimate.regret, 1);
    $("lift").textContent = snapshot.estimate.lift === null ? "–" : percent(snapshot.estimate.lift);
    renderSampleRatio(stats.sample_ratio);
    renderCanary(stats.canary);
    const held = Boolean(stats.autopilot && stats.autopilot.held);
    $("autopilot").hidden = !held;
    $("autopilot").textContent = held ? "Automatic actions held until resumed (an operator rolled one back)" : "";

    const serving = stats.arms.filter((arm) => !arm.shadow);
    const shadow = stats.arms.filter((arm) => arm.shadow);
    renderArms(serving);
    renderShadow(shadow);
    refreshArmInputs(state, serving);
    drawCharts(state.series, stats, serving, shadow);
  }

  function errorRate(arm) {
    const attempts = arm.decisions + arm.errors;
    return attempts ? arm.errors / attempts : null;
  }

  function renderArms(arms) {
    const body = document.querySelector("#arms tbody");
    body.replaceChildren();
    for (const arm of arms) {
      const row = body.insertRow();
      row.dataset.arm = arm.name;
      cell(row, arm.name);
      row.insertCell().append(badge(arm.health));
      cell(row, number(arm.decisions), "number");
      cell(row, percent(arm.allocation), "number allocation");
      cell(row, number(arm.rewards), "number");
      cell(row, number(arm.mean, 4), "number");
      cell(row, arm.interval ? `[${number(arm.interval[0], 4)}, ${number(arm.interval[1], 4)}]` : "–");
      cell(row, percent(arm.p_best), "number");
      cell(row, number(arm.latency_ms.p50, 1), "number");
      cell(row, number(arm.latency_ms.p99, 1), "number");
      cell(row, percent(errorRate(arm), 2), "number");
      renderGuardrail(row.insertCell(), arm.guardrail);
    }
  }

  // The arm's guardrail state, how it is served, and the figures last judged (the reason as tooltip).
  function renderGuardrail(td, guardrail) {
    td.className = "guardrail";
    if (!guardrail) {
      td.textContent = "–";
      return;
    }
    td.append(badge(guardrail.state));
    if (guardrail.serving !== "full") td.append(badge(guardrail.serving));
    const figures = guardrail.figures;
    const text = document.createElement("span");
    text.className = "muted";
    if (!figures) {
      text.textContent = "not judged yet";
    } else {
      const p99 = figures.p99_ms === null ? "–" : `${number(figures.p99_ms, 0)} ms`;
      text.textContent = `errors ${percent(figures.error_rate, 2)} · p99 ${p99} · ${number(figures.requests)} requests in ${figures.window_s} s`;
      td.title = figures.reason || (figures.judged ? "within its guardrails" : "too few requests to judge");
    }
    td.append(text);
  }

  function renderSampleRatio(sampleRatio) {
    const checks = sampleRatio ? [["decisions", sampleRatio.decisions], ["feedback", sampleRatio.feedback]] : [];
    const flagged = checks
      .filter(([, check]) => check && check.flagged)
      .map(([what, check]) => `${what} p = ${pValue(check.p_value)}${check.reason ? ` (${check.reason})` : ""}`);
    $("srm-warning").hidden = flagged.length === 0;
    $("srm-warning").textContent = flagged.length ? `Sample ratio mismatch: ${flagged.join("; ")}` : "";
  }

  function renderCanary(canary) {
    $("canary").hidden = !canary;
    if (!canary) return;
    $("canary").replaceChildren(
      `Canary: step ${canary.step + 1} of ${canary.steps.length}, ${percent(canary.candidate_share)} to candidate, `,
      badge(canary.state),
      `, P(not worse) ${percent(canary.p_not_worse)}`,
      ...(canary.reason ? [` — ${canary.reason}`] : []),
    );
  }

  // ---------------------------------------------------------------- audit log
  function followAudit(url) {
    const body = document.querySelector("#audit-log tbody");
    async function refresh() {
      let entries;
      try {
        const response = await fetch(url);
        if (!response.ok) throw new Error(`${response.status} ${(await response.json().catch(() => ({}))).detail || ""}`);
        entries = await response.json();
      } catch (error) {
        $("audit-status").textContent = `could not load: ${error.message}`;
        return;
      }
      $("audit-status").textContent = `newest ${entries.length}, updated ${new Date().toLocaleTimeString()}`;
      body.replaceChildren();
      for (const entry of entries.reverse()) {
        const row = body.insertRow();
        row.dataset.action = entry.action;
        cell(row, new Date(entry.at * 1000).toLocaleString());
        cell(row, entry.actor);
        cell(row, entry.action);
        cell(row, entry.arm || "–");
        cell(row, entry.reason);
      }
    }
    refresh();
    setInterval(refresh, AUDIT_REFRESH_MS);
  }

  function renderShadow(arms) {
    $("shadow").hidden = arms.length === 0;
    const body = document.querySelector("#shadow-arms tbody");
    body.replaceChildren();
    for (const arm of arms) {
      const row = body.insertRow();
      row.dataset.arm = arm.name;
      cell(row, arm.name);
      row.insertCell().append(badge(arm.health));
      cell(row, number(arm.decisions), "number");
      cell(row, number(arm.mirror_dropped), "number");
      cell(row, number(arm.latency_ms.p50, 1), "number");
      cell(row, number(arm.latency_ms.p99, 1), "number");
      cell(row, percent(errorRate(arm), 2), "number");
    }
  }

  // ---------------------------------------------------------------- charts
  function drawCharts(series, stats, serving, shadow) {
    const times = series.t.map((t) => new Date(t * 1000));
    const now = Date.now() / 1000;
    // The newest bucket is still filling: rates use the seconds it has lasted so far.
    const seconds = series.t.map((t) => Math.max(1, Math.min(series.bucket_s, now - t)));
    const column = (arm, key) => (series.arms[arm.name] || {})[key] || [];
    // One colour per arm on every chart, by its place in the experiment.
    const colorOf = (arm) => COLORS[stats.arms.findIndex((other) => other.name === arm.name) % COLORS.length];

    plot("chart-share", "Traffic share over time (%)", serving.map((arm) => ({
      x: times, y: column(arm, "decisions"), name: arm.name, stackgroup: "share", groupnorm: "percent",
      line: { color: colorOf(arm) },
    })), { yaxis: { range: [0, 100] } });

    const observed = serving.filter((arm) => arm.mean !== null);
    plot("chart-mean", "Reward mean with 95 % interval", [{
      type: "scatter", mode: "markers", x: observed.map((arm) => arm.name), y: observed.map((arm) => arm.mean),
      marker: { size: 10, color: observed.map(colorOf) },
      error_y: {
        type: "data", symmetric: false, color: "#6b7385",
        array: observed.map((arm) => arm.interval[1] - arm.mean),
        arrayminus: observed.map((arm) => arm.mean - arm.interval[0]),
      },
      name: "mean",
    }], { hovermode: "closest", showlegend: false });

    plot("chart-pbest", "Probability of being best", serving.map((arm) => ({
      x: times, y: column(arm, "p_best"), name: arm.name, mode: "lines", connectgaps: true,
      line: { color: colorOf(arm) },
    })), { yaxis: { range: [0, 1] } });

    const total = (key) => series.t.map((_, i) => serving.reduce((sum, arm) => sum + (column(arm, key)[i] || 0), 0) / seconds[i]);
    plot("chart-rate", "Decisions and feedback per second", [
      { x: times, y: total("decisions"), name: "decisions/s", mode: "lines" },
      { x: times, y: total("rewards"), name: "feedback/s", mode: "lines" },
    ]);

    plot("chart-latency", "Latency per arm (ms): p50 solid, p99 dotted", latencyTraces(serving, times, column, colorOf), {
      yaxis: { rangemode: "nonnegative" },
    });

    plot("chart-errors", "Error rate per arm (%)", serving.map((arm) => ({
      x: times, name: arm.name, mode: "lines", line: { color: colorOf(arm) },
      y: column(arm, "decisions").map((decisions, i) => {
        const errors = column(arm, "errors")[i] || 0;
        return decisions + errors > 0 ? (100 * errors) / (decisions + errors) : null;
      }),
    })), { yaxis: { rangemode: "nonnegative" } });

    // Regret against always serving today's leader, with today's estimated means.
    const leader = serving.find((arm) => arm.name === stats.leader && arm.mean !== null);
    let cumulative = 0;
    const regret = series.t.map((_, i) => {
      if (leader) {
        for (const arm of observed) cumulative += (column(arm, "decisions")[i] || 0) * (leader.mean - arm.mean);
      }
      return cumulative;
    });
    plot("chart-regret", "Estimated regret vs. always serving the leader (cumulative)", [
      { x: times, y: regret, name: "regret", mode: "lines", fill: "tozeroy" },
    ], { showlegend: false });

    if (shadow.length > 0) {
      plot("chart-shadow-latency", "Shadow arms: latency (ms), p50 solid, p99 dotted", latencyTraces(shadow, times, column, colorOf), {
        yaxis: { rangemode: "nonnegative" },
      });
    }
  }

  function latencyTraces(arms, times, column, colorOf) {
    return arms.flatMap((arm) => {
      const color = colorOf(arm);
      return [
        { x: times, y: column(arm, "latency_p50_ms"), name: `${arm.name} p50`, mode: "lines", line: { color }, connectgaps: true },
        { x: times, y: column(arm, "latency_p99_ms"), name: `${arm.name} p99`, mode: "lines", line: { color, dash: "dot" }, connectgaps: true },
      ];
    });
  }

  const COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];

  function plot(id, title, traces, layout = {}) {
    Plotly.react(id, traces, { ...LAYOUT, ...layout, title: { text: title, font: { size: 14 } } }, CHART_CONFIG);
  }

  // ---------------------------------------------------------------- controls
  function setUpControls(name, base, state) {
    // The buttons call the API themselves: the form is never submitted.
    $("controls").addEventListener("submit", (event) => event.preventDefault());
    const token = $("token");
    token.value = sessionStorage.getItem("mab-admin-token") || "";
    token.addEventListener("change", () => sessionStorage.setItem("mab-admin-token", token.value.trim()));

    async function call(method, path, body, done) {
      const headers = adminHeaders();
      const message = $("control-message");
      try {
        const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
        const reply = await response.json().catch(() => ({}));
        if (!response.ok) {
          message.textContent = `refused (${response.status}): ${reply.detail || response.statusText}`;
          message.className = "refused";
          return;
        }
        message.textContent = done(reply);
        message.className = "done";
      } catch (error) {
        message.textContent = `failed: ${error.message}`;
        message.className = "refused";
      }
    }

    $("pause").addEventListener("click", () => call("POST", `${base}/pause`, undefined, () => "paused: all traffic to the control arm"));
    $("resume").addEventListener("click", () => call("POST", `${base}/resume`, undefined, () => "resumed: the policy routes again"));
    $("promote").addEventListener("click", () => {
      const arm = $("promote-arm").value;
      call("POST", `${base}/promote`, { arm }, () => `promoted ${arm}`);
    });
    $("rollback").addEventListener("click", () => call("POST", `${base}/rollback`, undefined, (reply) => `rolled back to the settings of version ${reply.version - 1}: policy ${reply.policy.kind}, status ${reply.status}`));
    $("apply-weights").addEventListener("click", () => {
      const arms = state.stats ? state.stats.arms : [];
      const weights = arms.map((arm) => (arm.shadow ? 0 : Number($(`weight-${arm.name}`).value) || 0));
      call("PATCH", base, { policy: { kind: "static", weights } }, () => `static weights set: ${weights.join(" / ")}`);
    });
  }

  // The management API's headers, with the admin token typed into the page if any.
  function adminHeaders() {
    const headers = { "Content-Type": "application/json" };
    const secret = $("token").value.trim();
    if (secret) headers.Authorization = `Bearer ${secret}`;
    return headers;
  }

  // ---------------------------------------------------------------- what if
  // Another policy's mean reward, estimated by the service on the experiment's decision log
  // (POST {base}/evaluate with the admin token), beside the logging policy's observed mean.
  const ESTIMATES = [
    ["logged_mean", "logged policy (observed)"],
    ["ips", "IPS"],
    ["snips", "self-normalised IPS"],
    ["doubly_robust", "doubly robust"],
  ];

  function setUpWhatIf(base) {
    $("what-if-form").addEventListener("submit", (event) => event.preventDefault());
    const kind = $("what-if-kind");
    const showInputs = () => {
      $("what-if-weights").closest("label").hidden = kind.value !== "static";
      $("what-if-epsilon").closest("label").hidden = kind.value !== "epsilon_greedy";
    };
    kind.addEventListener("change", showInputs);
    showInputs();

    const message = $("what-if-message");
    const say = (text, className) => {
      message.textContent = text;
      message.className = className;
    };
    $("what-if-run").addEventListener("click", async () => {
      const body = $("what-if-result");
      body.replaceChildren();
      const policy = whatIfPolicy(kind.value);
      if (typeof policy === "string") {
        say(policy, "refused");
        return;
      }
      say("estimating…", "muted");
      const run = $("what-if-run");
      run.disabled = true;  // one estimate at a time: no older answer lands after a newer one
      try {
        const response = await fetch(`${base}/evaluate`, { method: "POST", headers: adminHeaders(), body: JSON.stringify({ policy }) });
        const reply = await response.json().catch(() => ({}));
        if (!response.ok) {
          say(`refused (${response.status}): ${reply.detail || response.statusText}`, "refused");
          return;
        }
        for (const [key, label] of ESTIMATES) {
          const estimate = reply[key];
          const row = body.insertRow();
          row.dataset.estimate = key;
          cell(row, label);
          cell(row, significant(estimate.value), "number");
          cell(row, `[${significant(estimate.lower)}, ${significant(estimate.upper)}]`);
        }
        const shares = Object.entries(reply.candidate_allocation).map(([arm, share]) => `${arm} ${percent(share)}`);
        const excluded = reply.excluded ? `; ${number(reply.excluded)} logged decisions left out` : "";
        say(`on ${number(reply.decisions)} decisions, effective sample size ${number(reply.effective_sample_size, 1)}, candidate shares: ${shares.join(", ")}${excluded}`, "done");
      } catch (error) {
        say(`failed: ${error.message}`, "refused");
      } finally {
        run.disabled = false;
      }
    });
  }

  // The candidate policy from the form, or what is wrong with it.
  function whatIfPolicy(kind) {
    if (kind === "static") {
      const parts = $("what-if-weights").value.split(",").map((part) => part.trim());
      const weights = parts.map(Number);
      if (parts.some((part) => part === "") || weights.some((weight) => !Number.isFinite(weight) || weight < 0)) {
        return "weights: comma-separated numbers, one per arm (e.g. 0,0,1)";
      }
      return { kind, weights };
    }
    if (kind === "epsilon_greedy") {
      const epsilon = $("what-if-epsilon").valueAsNumber;
      if (!(epsilon >= 0 && epsilon <= 1)) return "epsilon: a number from 0 to 1";
      return { kind, epsilon };
    }
    return { kind };
  }

  // The promote list and weight inputs are rebuilt only when the arms change, never mid-edit.
  function refreshArmInputs(state, serving) {
    const names = serving.map((arm) => arm.name).join("\u0000");
    if (names === state.armNames) return;
    state.armNames = names;
    const select = $("promote-arm");
    select.replaceChildren(...serving.map((arm) => new Option(arm.name, arm.name)));
    const weights = $("weights");
    weights.replaceChildren(...serving.map((arm) => {
      const label = document.createElement("label");
      label.textContent = `${arm.name} `;
      const input = document.createElement("input");
      input.type = "number";
      input.min = "0";
      input.step = "any";
      input.id = `weight-${arm.name}`;
      input.value = String(Math.round(100 * arm.allocation));
      label.append(input);
      return label;
    }));
  }

  return { overview, experiment };
})();

if (document.body.dataset.page === "overview") {
  mab.overview();
} else if (document.body.dataset.page === "experiment") {
  mab.experiment(decodeURIComponent(location.pathname.split("/").pop()));
}
