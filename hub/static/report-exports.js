// Report exports on the Reports page: CSV / XLSX / PDF buttons, a <progress> with rows written, then a
// download. The hub writes the file in a worker (POST /reports/exports, polled at GET /reports/exports/{id});
// the download is a one-time link (POST .../ticket) the browser follows itself, so a 1,000,000-row file
// streams to disk instead of into this tab's memory, and the bearer token never goes into a URL.
//
//   import { mountExports } from "/console/report-exports.js";
//   const exports = mountExports(document.getElementById("exports"), () => currentFilters(),
//                                { report: "checkin_summary" });
//   exports.setReport("checkin_detail");  // e.g. when the page shows another report
//
// getFilters() returns the report's filters as the API takes them (since/until in unix seconds, ids...);
// empty values are left out. options.report: the report first chosen in the list (checkin_summary,
// checkin_detail or sales; default checkin_detail); the person can choose another there.
import { api, el, fmtNumber, say, show, t } from "/console/common.js";

const REPORTS = [
  ["checkin_summary", "检票汇总表", "Check-in summary"],
  ["checkin_detail", "检票明细表", "Check-in detail"],
  ["sales", "销售汇总表", "Sales summary"],
];
const FORMATS = [
  ["csv", "CSV", "表格文本,Excel 可直接打开", "plain table, opens in Excel"],
  ["xlsx", "XLSX", "Excel 工作簿", "Excel workbook"],
  ["pdf", "PDF", "汇总、图表及明细前 500 行", "summary, charts and the first 500 detail rows"],
];
const POLL_MS = 700;
const STATES = {
  queued: t("排队中", "Queued"), running: t("生成中", "Writing"), done: t("已完成", "Done"),
  failed: t("失败", "Failed"), cancelled: t("已取消", "Cancelled"),
};

function fmtSize(bytes) {
  if (bytes === null || bytes === undefined) return "";
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

function cleanFilters(filters) {
  const out = {};
  for (const [k, v] of Object.entries(filters || {})) {
    if (v === null || v === undefined || v === "") continue;
    out[k] = v;
  }
  return out;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** The export controls in `container`; returns { busy(): true while an export is under way, setReport(r) }. */
export function mountExports(container, getFilters, options = {}) {
  if (!document.querySelector('link[href="/console/report-exports.css"]')) {
    document.head.append(el("link", { rel: "stylesheet", href: "/console/report-exports.css" }));
  }
  const select = el("select", { id: "export-report" },
    REPORTS.map(([value, zh, en]) => el("option", { value }, t(zh, en))));
  const knownReport = (r) => REPORTS.some(([value]) => value === r);
  select.value = knownReport(options.report) ? options.report : "checkin_detail";
  const buttons = FORMATS.map(([fmt, name, zh, en]) => el("button", {
    type: "button", class: "primary", id: `export-${fmt}`, dataset: { format: fmt },
    title: say(zh, en), onclick: () => run(fmt),
  }, t("导出", "Export") + " " + name));
  const bar = el("progress", { id: "export-progress", max: "1" });
  const progressText = el("span", { id: "export-progress-text", class: "export-count" });
  const cancel = el("button", { type: "button", class: "secondary", id: "export-cancel", onclick: () => stop() },
    t("取消导出", "Cancel export"));
  const progressBox = el("div", { class: "export-progress", hidden: true },
    el("label", { for: "export-progress" }, t("导出进度", "Export progress")), bar,
    el("div", { class: "export-line" }, progressText, cancel));
  const status = el("p", { id: "export-status", role: "status", "aria-live": "polite", class: "msg", hidden: true });
  const alert = el("p", { id: "export-error", role: "alert", class: "error", hidden: true });
  const link = el("a", { id: "export-download", class: "export-download", href: "#", hidden: true });
  link.addEventListener("click", (ev) => { ev.preventDefault(); if (done) fetchFile(done); });

  container.replaceChildren(el("section", { class: "card exports", "aria-labelledby": "exports-title" },
    el("h2", { id: "exports-title" }, t("导出", "Export")),
    el("div", { class: "export-controls" },
      el("label", { for: "export-report" }, t("报表", "Report"), select),
      el("div", { class: "buttons", role: "group", "aria-label": t("文件格式", "File format") }, buttons)),
    el("p", { class: "export-hint" }, say(
      "按上方当前筛选条件导出;百万行明细也可导出,请使用 CSV 或 XLSX,PDF 只含汇总、图表和明细前 500 行。",
      "Exports use the filters above; for a million detail rows use CSV or XLSX (the PDF holds the summary, charts "
      + "and the first 500 detail rows).")),
    progressBox, status, alert, link));

  let current = null; // the export under way: { id, stopped }
  let done = null; // the last finished export: { id, filename, size }

  function setBusy(busy) {
    buttons.forEach((b) => { b.disabled = busy; });
    select.disabled = busy;
    progressBox.hidden = !busy;
  }

  function fail(err, what) {
    show(alert, `${what} ${err.message || err}`);
  }

  function showProgress(job) {
    if (job.rows_total === null || job.rows_total === undefined) {
      bar.removeAttribute("value");
      progressText.textContent = `${STATES[job.state] || job.state} · ${say(`已写入 ${fmtNumber(job.rows_done)} 行`,
        `${fmtNumber(job.rows_done)} rows written`)}`;
    } else {
      bar.max = Math.max(1, job.rows_total);
      bar.value = Math.min(job.rows_done, Math.max(1, job.rows_total));
      progressText.textContent = `${STATES[job.state] || job.state} · ${say(
        `已写入 ${fmtNumber(job.rows_done)} / ${fmtNumber(job.rows_total)} 行`,
        `${fmtNumber(job.rows_done)} of ${fmtNumber(job.rows_total)} rows written`)}`;
    }
  }

  async function run(fmt) {
    if (current) return;
    show(alert, "");
    show(status, "");
    link.hidden = true;
    done = null;
    const body = { report: select.value, format: fmt, filters: cleanFilters(getFilters ? getFilters() : {}) };
    let job;
    try {
      setBusy(true);
      bar.removeAttribute("value");
      progressText.textContent = STATES.queued;
      const started = await api("POST", "/reports/exports", body);
      current = { id: started.export_id, stopped: false };
      for (;;) {
        job = await api("GET", `/reports/exports/${current.id}`);
        showProgress(job);
        if (job.state !== "queued" && job.state !== "running") break;
        await sleep(POLL_MS);
      }
    } catch (err) {
      fail(err, say("导出失败:", "The export failed:"));
      current = null;
      setBusy(false);
      return;
    }
    current = null;
    setBusy(false);
    if (job.state === "done") {
      done = { id: job.export_id, filename: job.filename, size: job.size };
      show(status, say(`导出完成:${fmtNumber(job.rows_done)} 行,${fmtSize(job.size)}。正在下载 ${job.filename}`,
        `Export done: ${fmtNumber(job.rows_done)} rows, ${fmtSize(job.size)}. Downloading ${job.filename}`), "msg");
      link.textContent = t("再次下载", "Download again") + ` ${job.filename} (${fmtSize(job.size)})`;
      link.hidden = false;
      await fetchFile(done);
    } else if (job.state === "cancelled") {
      show(status, say("导出已取消。", "The export was cancelled."), "msg");
    } else {
      show(alert, job.error_zh && job.error ? say(job.error_zh, job.error)
        : say("导出失败,请重试。", "The export failed; try again."));
    }
  }

  async function fetchFile(which) {
    try {
      const ticket = await api("POST", `/reports/exports/${which.id}/ticket`);
      const a = el("a", { href: ticket.url, download: which.filename, hidden: true });
      document.body.append(a);
      a.click(); // the browser streams the file to disk; the link works once, for a minute
      a.remove();
    } catch (err) {
      link.hidden = true;
      fail(err, say("下载失败:", "The download failed:"));
    }
  }

  async function stop() {
    if (!current || current.stopped) return;
    current.stopped = true;
    cancel.disabled = true;
    try {
      await api("DELETE", `/reports/exports/${current.id}`);
    } catch (err) {
      fail(err, say("取消失败:", "Could not cancel:"));
    } finally {
      cancel.disabled = false;
    }
  }

  return {
    busy: () => current !== null,
    setReport: (r) => { if (knownReport(r) && !current) select.value = r; },
  };
}
