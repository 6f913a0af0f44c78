// The wharf dashboard's script: SVG line charts, job progress and the prediction form.
// No framework and nothing from another origin: the page's CSP runs this file only.
(function () {
  "use strict";

  var SVG_NS = "http://www.w3.org/2000/svg"; // a namespace name, never fetched
  var UI_HEADER = { "X-Wharf-UI": "1" }; // the server takes POSTs carrying it (a cross-site form cannot)
  var COLORS = ["#1f77b4", "#d95f02", "#c0392b", "#7570b3", "#1b9e77", "#e7298a", "#66a61e", "#a6761d",
    "#e6ab02", "#666666"];
  var HISTORY_REFRESH_MS = 30000;
  var DRIFT_REFRESH_MS = 300000;
  var JOBS_REFRESH_MS = 2000;

  // -- requests ------------------------------------------------------------------------------

  function request(url, options) {
    options = options || {};
    var headers = Object.assign({ Accept: "application/json" }, options.headers || {});
    return fetch(url, Object.assign({}, options, { headers: headers, credentials: "same-origin" }))
      .then(function (response) {
        return response.json().catch(function () { return null; }).then(function (body) {
          if (response.status === 401) {
            window.location.reload(); // the session's key is gone: the page sends us to the login
          }
          if (!response.ok) {
            var error = new Error((body && body.detail) || "The server answered " + response.status + ".");
            error.problem = body;
            throw error;
          }
          return body;
        });
      });
  }

  // -- charts ----------------------------------------------------------------------------------

  function el(name, attrs, parent) {
    var node = document.createElementNS(SVG_NS, name);
    Object.keys(attrs || {}).forEach(function (key) { node.setAttribute(key, attrs[key]); });
    if (parent) parent.appendChild(node);
    return node;
  }

  function text(parent, x, y, content, attrs) {
    var node = el("text", Object.assign({ x: x, y: y }, attrs || {}), parent);
    node.textContent = content;
    return node;
  }

  // A round step (1, 2, 2.5 or 5 times a power of ten) of about ``raw``.
  function niceStep(raw) {
    var power = Math.pow(10, Math.floor(Math.log10(raw)));
    var m = raw / power;
    return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 2.5 ? 2.5 : m <= 5 ? 5 : 10) * power;
  }

  var TIME_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 180, 240, 360, 720, 1440]; // minutes

  function formatTick(value) {
    if (value === 0) return "0";
    if (Math.abs(value) >= 1000) return (value / 1000).toFixed(value % 1000 ? 1 : 0) + "k";
    return String(Number(value.toPrecision(3)));
  }

  function pad(n) { return (n < 10 ? "0" : "") + n; }

  function timeLabel(epochMinute, withDay) {
    var d = new Date(epochMinute * 60000);
    var hhmm = pad(d.getHours()) + ":" + pad(d.getMinutes());
    return withDay ? pad(d.getDate()) + "/" + pad(d.getMonth() + 1) + " " + hhmm : hhmm;
  }

  // A line chart of series over shared times: axes, grid, labels, gaps where a value is null.
  function lineChart(body, spec) {
    var W = 560, H = 210, L = 52, R = 18, T = 12, B = 30;
    var times = spec.times || [];
    var series = spec.series.filter(function (s) { return s.values && s.values.length; });
    var values = [];
    series.forEach(function (s) {
      s.values.forEach(function (v) { if (typeof v === "number" && isFinite(v)) values.push(v); });
    });
    var highest = Math.max.apply(null, values.concat([spec.threshold || 0, spec.minTop || 0]));
    var step = highest > 0 ? niceStep(highest / 4) : 0.25;
    if (spec.integer) step = Math.max(1, Math.round(step));
    var top = step * Math.max(1, Math.ceil(highest / step));
    var t0 = times[0], t1 = times[times.length - 1];
    var xt = function (t) {
      return t1 > t0 ? L + ((t - t0) / (t1 - t0)) * (W - L - R) : (L + W - R) / 2;
    };
    var x = function (i) { return xt(times[i]); };
    var y = function (v) { return T + (1 - v / top) * (H - T - B); };

    var svg = el("svg", { viewBox: "0 0 " + W + " " + H, role: "img", "aria-label": spec.label });
    var grid = el("g", { class: "grid" }, svg);
    var axis = el("g", { class: "axis" }, svg);
    for (var v = 0; v <= top + step / 2; v += step) {
      el("line", { x1: L, x2: W - R, y1: y(v), y2: y(v) }, grid);
      text(axis, L - 6, y(v) + 3, formatTick(v), { "text-anchor": "end" });
    }
    el("line", { x1: L, x2: W - R, y1: H - B, y2: H - B }, axis);
    el("line", { x1: L, x2: L, y1: T, y2: H - B }, axis);
    // Time ticks on round local times: every 10 min over an hour, every 4 h over a day.
    var span = Math.max(t1 - t0, 1);
    var every = TIME_STEPS.filter(function (m) { return span / m <= 6; })[0] || 1440;
    var offset = -new Date(t0 * 60000).getTimezoneOffset();
    var withDay = span > 24 * 60;
    for (var t = Math.ceil((t0 + offset) / every) * every - offset; t <= t1; t += every) {
      el("line", { x1: xt(t), x2: xt(t), y1: H - B, y2: H - B + 4 }, axis);
      text(axis, xt(t), H - B + 15, timeLabel(t, withDay), { "text-anchor": "middle" });
    }
    text(axis, 11, T + (H - T - B) / 2, spec.unit, {
      "text-anchor": "middle",
      transform: "rotate(-90 11 " + (T + (H - T - B) / 2) + ")",
    });

    if (spec.threshold) {
      el("line", { class: "threshold", x1: L, x2: W - R, y1: y(spec.threshold), y2: y(spec.threshold) }, svg);
      text(svg, W - R, y(spec.threshold) - 4, spec.thresholdLabel, { "text-anchor": "end" });
    }
    series.forEach(function (s, n) {
      var color = s.color || COLORS[n % COLORS.length];
      var path = "";
      var open = false;
      s.values.forEach(function (value, i) {
        var ok = typeof value === "number" && isFinite(value);
        if (ok) {
          path += (open ? "L" : "M") + x(i).toFixed(1) + " " + y(value).toFixed(1);
          if (!open && typeof s.values[i + 1] !== "number") {
            el("circle", { cx: x(i), cy: y(value), r: 2.2, fill: color }, svg); // a point without neighbours
          }
          open = true;
        } else {
          open = false;
        }
      });
      if (path) el("path", { class: "series", d: path, stroke: color, "data-series": s.name }, svg);
    });
    if (!values.length) {
      text(svg, (L + W - R) / 2, (T + H - B) / 2, spec.empty, { "text-anchor": "middle" });
    }

    body.textContent = "";
    body.appendChild(svg);
    if (series.length > 1 || spec.legend) {
      var legend = document.createElement("div");
      legend.className = "legend";
      series.forEach(function (s, n) {
        var item = document.createElement("span");
        var swatch = document.createElement("span");
        swatch.className = "swatch";
        swatch.style.background = s.color || COLORS[n % COLORS.length];
        item.appendChild(swatch);
        item.appendChild(document.createTextNode(s.name));
        legend.appendChild(item);
      });
      body.appendChild(legend);
    }
  }

  var CHARTS = {
    rate: function (data) {
      return {
        label: "Requests per minute", unit: "req/min", times: data.minutes, minTop: 1, integer: true,
        empty: "No requests in this window",
        series: [
          { name: "requests", values: data.requests, color: "#1f77b4" },
          { name: "errors", values: data.errors, color: "#c0392b" },
        ],
      };
    },
    latency: function (data) {
      var latency = data.latency_ms || {};
      return {
        label: "Latency percentiles", unit: "ms", times: data.minutes, empty: "No requests in this window",
        series: [
          { name: "p50", values: latency.p50, color: "#1f77b4" },
          { name: "p95", values: latency.p95, color: "#d95f02" },
          { name: "p99", values: latency.p99, color: "#c0392b" },
        ],
      };
    },
    psi: function (data, figure) {
      var columns = data.columns || {};
      var threshold = Number(figure.dataset.threshold) || 0;
      return {
        label: "PSI per column", unit: "PSI", times: data.times, legend: true, threshold: threshold,
        thresholdLabel: "drift at " + threshold, empty: "No drift measured in this window",
        series: Object.keys(columns).map(function (name) { return { name: name, values: columns[name] }; }),
      };
    },
  };

  function drawCharts(kinds) {
    var figures = Array.prototype.filter.call(document.querySelectorAll("figure[data-chart]"), function (f) {
      return kinds.indexOf(f.dataset.chart) >= 0;
    });
    var byUrl = {};
    figures.forEach(function (f) { (byUrl[f.dataset.url] = byUrl[f.dataset.url] || []).push(f); });
    Object.keys(byUrl).forEach(function (url) {
      request(url).then(function (data) {
        byUrl[url].forEach(function (figure) {
          lineChart(figure.querySelector(".chart-body"), CHARTS[figure.dataset.chart](data, figure));
          figure.setAttribute("data-drawn", "");
        });
      }, function (error) {
        byUrl[url].forEach(function (figure) {
          var body = figure.querySelector(".chart-body");
          body.textContent = "";
          var note = document.createElement("p");
          note.className = "muted small";
          note.textContent = "No chart: " + error.message;
          body.appendChild(note);
          figure.setAttribute("data-drawn", "");
        });
      });
    });
    return figures.length;
  }

  function startCharts() {
    if (drawCharts(["rate", "latency"])) {
      window.setInterval(function () { drawCharts(["rate", "latency"]); }, HISTORY_REFRESH_MS);
    }
    if (drawCharts(["psi"])) {
      window.setInterval(function () { drawCharts(["psi"]); }, DRIFT_REFRESH_MS);
    }
  }

  // -- the prediction form ---------------------------------------------------------------------

  function fieldValue(input) {
    var kind = input.dataset.input;
    if (kind === "json") return JSON.parse(input.value);
    if (kind === "number") return input.value === "" ? null : Number(input.value);
    if (input.value === "" && input.hasAttribute("data-nullable")) return null;
    return input.value;
  }

  function shown(value) {
    return typeof value === "string" ? value : JSON.stringify(value);
  }

  function showPrediction(box, body) {
    box.className = "result";
    box.textContent = "";
    var answer = document.createElement("div");
    answer.className = "answer";
    var label = document.createElement("span");
    label.className = "muted small";
    label.textContent = "prediction ";
    var value = document.createElement("span");
    value.setAttribute("data-role", "prediction");
    value.textContent = shown(body.predictions[0]);
    answer.appendChild(label);
    answer.appendChild(value);
    box.appendChild(answer);
    var meta = document.createElement("div");
    meta.className = "muted small";
    meta.textContent = body.model + " v" + body.version + (body.answered_by ? " (answered by v" + body.answered_by + ")" : "");
    box.appendChild(meta);
    if (body.probabilities && body.classes) {
      var table = document.createElement("table");
      table.className = "bars";
      table.setAttribute("data-role", "probabilities");
      body.classes.forEach(function (name, i) {
        var p = body.probabilities[0][i];
        var row = table.insertRow();
        row.insertCell().textContent = shown(name);
        var number = row.insertCell();
        number.className = "num small";
        number.textContent = p.toFixed(3);
        var cell = row.insertCell();
        cell.className = "barcell";
        var bar = document.createElement("div");
        bar.className = "hbar";
        bar.style.width = (100 * p).toFixed(1) + "%";
        cell.appendChild(bar);
      });
      box.appendChild(table);
    }
  }

  function showProblem(box, error) {
    box.className = "result failed";
    var problem = error.problem || {};
    var where = problem.field ? " (" + problem.field + ")" : "";
    box.textContent = error.message + where;
    box.setAttribute("data-status", String(problem.status || ""));
  }

  function startPredictForm() {
    var form = document.getElementById("predict-form");
    if (!form) return;
    var box = document.getElementById("prediction-result");
    var button = document.getElementById("predict-button");
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var row = {};
      Array.prototype.forEach.call(form.querySelectorAll("[data-column]"), function (input) {
        row[input.dataset.column] = fieldValue(input);
      });
      var probabilities = document.getElementById("want-probabilities");
      var url = form.dataset.url + "?version=" + encodeURIComponent(form.dataset.version) +
        (probabilities && probabilities.checked ? "&probabilities=true" : "");
      button.disabled = true;
      box.className = "result";
      box.removeAttribute("data-status");
      box.textContent = "Predicting…";
      request(url, {
        method: "POST",
        headers: Object.assign({ "Content-Type": "application/json" }, UI_HEADER),
        body: JSON.stringify({ instances: [row] }),
      }).then(function (body) { showPrediction(box, body); }, function (error) { showProblem(box, error); })
        .then(function () { button.disabled = false; });
    });
  }

  // -- jobs ------------------------------------------------------------------------------------

  function updateJob(table, job) {
    var row = document.getElementById("job-" + job.id);
    if (!row) return false;
    var state = row.querySelector("[data-field=state]");
    state.textContent = job.state;
    state.className = "badge state-" + job.state;
    var progress = row.querySelector("[role=progressbar]");
    progress.setAttribute("aria-valuenow", String(job.percent));
    progress.querySelector(".bar").style.width = job.percent + "%";
    row.querySelector("[data-field=stage]").textContent = job.stage + " · " + job.percent + "%";
    row.querySelector("[data-field=run]").textContent = job.run;
    var outcome = row.querySelector("[data-field=outcome]");
    outcome.textContent = "";
    if (job.made) {
      var link = document.createElement("a");
      link.href = table.dataset.models + encodeURIComponent(job.made.model) + "?version=" + job.made.version;
      link.textContent = job.made.model + " v" + job.made.version;
      outcome.appendChild(link);
    } else if (job.error) {
      var error = document.createElement("span");
      error.className = "error";
      error.textContent = job.error;
      outcome.appendChild(error);
    }
    return true;
  }

  function startJobs() {
    var table = document.getElementById("jobs");
    if (!table || !table.hasAttribute("data-active")) return;
    function poll() {
      request(table.dataset.url).then(function (data) {
        var known = data.jobs.map(function (job) { return updateJob(table, job); });
        if (known.indexOf(false) >= 0) {
          window.location.reload(); // a job submitted since the page was made
          return;
        }
        if (data.active) window.setTimeout(poll, JOBS_REFRESH_MS);
        else table.removeAttribute("data-active");
      }, function () { window.setTimeout(poll, 5 * JOBS_REFRESH_MS); });
    }
    window.setTimeout(poll, JOBS_REFRESH_MS);
  }

  // -- forms -----------------------------------------------------------------------------------

  function startForms() {
    Array.prototype.forEach.call(document.querySelectorAll("form[data-autosubmit] select"), function (select) {
      select.addEventListener("change", function () { select.form.submit(); });
    });
    Array.prototype.forEach.call(document.querySelectorAll("form[data-ui-post]"), function (form) {
      form.addEventListener("submit", function (event) {
        event.preventDefault();
        // The answer is read to its end before leaving: leaving cuts a request still loading.
        fetch(form.action, { method: "POST", headers: UI_HEADER, credentials: "same-origin" })
          .then(function (response) { return response.text(); })
          .then(function () { window.location.assign(form.dataset.then); });
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    startForms();
    startCharts();
    startPredictForm();
    startJobs();
  });
})();
