import Foundation
import ICHAlerts
import ICHDecision
import ICHEngine
import ICHIngest

/// The console's HTML, rendered on the server: no external assets, every value escaped. The status page
/// refreshes itself every 5 s; the upload page works without script, and with it shows the upload's progress.
struct ConsolePages {
    let showIdentifiers: Bool

    static let notice = "Research appliance: the bundled model is trained on synthetic phantoms only. It makes no clinical claim; do not use it for diagnosis."

    func page(_ title: String, refresh: Bool = false, _ body: String) -> String {
        """
        <!doctype html>
        <html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
        \(refresh ? "<meta http-equiv=\"refresh\" content=\"5\">" : "")<title>ichd: \(e(title))</title>
        <link rel="stylesheet" href="/console.css"><script src="/console.js" defer></script></head>
        <body><header><strong>ichd</strong><nav><a href="/">Status</a><a href="/upload">Upload</a><a href="/metrics">Metrics</a></nav></header>
        <main><h1>\(e(title))</h1>
        \(body)
        </main><footer>\(e(Self.notice))</footer></body></html>
        """
    }

    func status(_ s: ConsoleStatus) -> String {
        var body = """
            <section class="health"><span id="health" class="badge \(s.health.rawValue.lowercased())">\(e(s.health.rawValue))</span>
            \(s.lamp.map { "<span id=\"lamp\" class=\"badge lamp-\($0.rawValue.lowercased())\">lamp \(e($0.rawValue))</span>" } ?? "<span class=\"badge\">no lamp (ichd serve)</span>")
            </section>
            """
        if !s.faults.isEmpty {
            body += "<ul id=\"faults\">" + s.faults.sorted { $0.key < $1.key }.map { "<li><b>\(e($0.key))</b> \(e($0.value))</li>" }.joined() + "</ul>"
        }
        let lat = [("p50", s.p50Ms), ("p95", s.p95Ms), ("p99", s.p99Ms)].map { name, v in
            "<td class=\"\(v.map { $0 > s.budgetMs ? "over" : "" } ?? "")\">\(v.map { "\($0) ms" } ?? "–")</td>"
        }.joined()
        body += """
            <h2>Pending alerts</h2>
            \(pendingAlerts(s))
            <h2>Pipeline</h2>
            <table class="facts">
            <tr><th>Model</th><td id="model">\(e(s.modelID)) <code>\(e(s.modelSHA))</code> (\(e(s.engine)))</td></tr>
            <tr><th>Queue</th><td id="queue">\(s.queue) file\(s.queue == 1 ? "" : "s")</td></tr>
            <tr><th>Scored since start</th><td id="slices">\(s.slices) slice\(s.slices == 1 ? "" : "s"), \(s.overBudget) over the \(s.budgetMs) ms budget</td></tr>
            </table>
            <table class="latency"><tr><th>file close to score</th><th>p50</th><th>p95</th><th>p99</th><th>budget</th></tr>
            <tr><th>recent slices</th>\(lat)<td>\(s.budgetMs) ms</td></tr></table>
            <h2>Last series</h2>
            \(recentSeries(s))
            """
        return page("Status", refresh: true, body)
    }

    func pendingAlerts(_ s: ConsoleStatus) -> String {
        guard !s.pendingAlerts.isEmpty else { return "<p id=\"alerts\" class=\"none\">No pending alerts.</p>" }
        let fmt = ISO8601DateFormatter()
        let rows = s.pendingAlerts.map { a in
            """
            <tr class="alert" data-alert="\(e(a.id))"><td><code>\(e(a.id))</code></td><td>\(e(fmt.string(from: a.raisedAt)))</td>
            <td>\(a.slice.map(String.init) ?? "–")</td><td>\(probabilityList(a.probabilities))</td>
            \(showIdentifiers ? "<td>\(e(a.seriesUID))\(a.accession.map { " acc \(e($0))" } ?? "")</td>" : "")
            <td><form method="post" action="/alerts/\(e(a.id))/ack"><button type="submit" class="ack">Acknowledge</button></form></td></tr>
            """
        }.joined()
        return """
            <table id="alerts" class="alerts"><tr><th>Alert</th><th>Raised</th><th>Slice</th><th>Probabilities</th>\(showIdentifiers ? "<th>Series</th>" : "")<th></th></tr>
            \(rows)</table>
            """
    }

    func recentSeries(_ s: ConsoleStatus) -> String {
        guard !s.recentResults.isEmpty else { return "<p class=\"none\">No series finished since start.</p>" }
        let fmt = ISO8601DateFormatter()
        let rows = s.recentResults.map { r in
            """
            <tr class="\(r.result.positive ? "pos" : "neg")"><td>\(e(fmt.string(from: r.finishedAt)))</td><td><b>\(r.result.positive ? "POS" : "NEG")</b></td>
            <td>\(r.result.scored) scored, \(r.result.skipped) skipped, \(r.result.rejected) refused</td><td>\(probabilityList(r.result.maxima))</td>
            <td>\(r.result.alertID.map { "<code>\(e($0))</code>" } ?? "–")</td><td>\(oodCell(r.result.ood))</td>\(showIdentifiers ? "<td>\(e(r.result.seriesUID))</td>" : "")</tr>
            """
        }.joined()
        return "<table id=\"series\"><tr><th>Finished</th><th>Result</th><th>Slices</th><th>Maxima</th><th>Alert</th><th>ood</th>\(showIdentifiers ? "<th>Series</th>" : "")</tr>\(rows)</table>"
    }

    /// docs/model-ood.md: the appliance alarms as usual and flags; the flag says what the numbers are worth.
    static let oodWarning = "OUT OF DISTRIBUTION: unlike anything the model was trained on; its verdict is not evidence, read the images without it."

    func oodCell(_ ood: Double?) -> String {
        guard let ood else { return "–" }
        return ood >= 1 ? "<b class=\"flagged\">\(String(format: "%.2f", ood)) OOD</b>" : String(format: "%.2f", ood)
    }

    func probabilityList(_ p: ClassProbabilities) -> String {
        zip(ClassProbabilities.keys, p.values).compactMap { k, v in v.map { "\(k) \(String(format: "%.2f", $0))" } }.joined(separator: " · ")
    }

    func upload(status: ConsoleStatus, reports: ([SliceReport], Double)?, error: String?) -> String {
        var body = """
            <p>Score one DICOM or JPEG slice, or several slices of one series. Uploads are scored in memory and a private
            folder, never stored in the drop folder or archive, and never raise the lamp.</p>
            <form id="upload" method="post" action="/upload" enctype="multipart/form-data">
            <input type="file" id="files" name="files" multiple accept=".dcm,.dicom,.jpg,.jpeg,application/dicom,image/jpeg">
            <button type="submit">Score</button>
            <span id="progress" hidden><progress id="progress-bar" max="100"></progress> <span id="progress-text"></span></span>
            </form>
            """
        body += "<div id=\"error\" class=\"error\"\(error == nil ? " hidden" : "")>\(e(error ?? ""))</div>"
        body += "<div id=\"results\">"
        if let (slices, ms) = reports { body += results(slices, ms: ms, status: status) }
        body += "</div>"
        return page("Upload", body)
    }

    func results(_ reports: [SliceReport], ms: Double, status: ConsoleStatus) -> String {
        var out = "<p class=\"timing\">\(reports.count) slice\(reports.count == 1 ? "" : "s") in <span id=\"total-ms\">\(String(format: "%.0f", ms))</span> ms (model \(e(status.modelID)), thresholds from the model).</p>"
        if let decision = SliceReport.seriesDecision(reports, adjacentSlices: status.adjacentSlices) {
            let f = decision.finding
            out += """
                <section id="series-decision" class="\(decision.isUrgent ? "pos" : "neg")"><h2>Series decision: \(decision.isUrgent ? "URGENT" : "not urgent")</h2>
                <p>\(f.slicesScored) scored, \(decision.skipped) skipped; rule: \(decision.adjacentSlices) adjacent slice\(decision.adjacentSlices == 1 ? "" : "s") at or above the <code>any</code> threshold.
                Positive classes (series maxima): \(f.positiveClasses.isEmpty ? "none" : e(f.positiveClasses.joined(separator: ", "))).</p>
                \(f.ood.map { "<p class=\"ood\(f.isOutOfDistribution ? " flagged" : "")\">ood \(String(format: "%.2f", $0))\(f.isOutOfDistribution ? ": " + e(Self.oodWarning) : " (within the training data's range)")</p>" } ?? "")</section>
                """
        }
        for r in reports { out += slice(r) }
        return out
    }

    func slice(_ r: SliceReport) -> String {
        let title = e(r.file) + (r.frame.map { " frame \($0)" } ?? "")
        var out = "<article class=\"slice\"><h3>\(title)</h3>"
        if showIdentifiers, !r.identifiers.isEmpty {
            out += "<p class=\"ids\">" + r.identifiers.sorted { $0.key < $1.key }.map { "\(e($0.key)) \(e($0.value))" }.joined(separator: " · ") + "</p>"
        }
        switch r.outcome {
        case .rejected(let code, let message):
            out += "<p class=\"rejected\">Refused (<code>\(e(code))</code>): \(e(message))</p>"
        case .skipped(let reason):
            out += "<p class=\"skipped\">Skipped: \(e(reason))</p>"
        case .scored(let s):
            let positives = Set(s.positives)
            out += "<p class=\"verdict\">\(positives.isEmpty ? "No class at or above its threshold." : "Positive: " + e(positives.sorted().map { s.classNames[$0] }.joined(separator: ", "))) (\(String(format: "%.0f", r.milliseconds)) ms)</p>"
            if let ood = s.ood {
                out += "<p class=\"ood\(s.isOutOfDistribution ? " flagged" : "")\">ood \(String(format: "%.2f", ood))\(s.isOutOfDistribution ? ": " + e(Self.oodWarning) : "")</p>"
            }
            out += "<table class=\"probabilities\"><tr><th>Class</th><th>Probability</th><th>Threshold</th><th></th></tr>"
            for (i, name) in s.classNames.enumerated() {
                let p = s.probabilities[i]
                out += "<tr class=\"\(positives.contains(i) ? "pos" : "")\"><td>\(e(name))</td><td class=\"p\">\(String(format: "%.3f", p))</td>"
                    + "<td>\(String(format: "%.3f", s.thresholds[i]))</td><td><meter min=\"0\" max=\"1\" value=\"\(p)\"></meter>\(positives.contains(i) ? " POSITIVE" : "")</td></tr>"
            }
            out += "</table><div class=\"images\">"
            if let jpegs = r.base64JPEGs() {
                out += "<figure><img class=\"preview\" alt=\"the three windows the model saw\" src=\"data:image/jpeg;base64,\(jpegs.preview)\"><figcaption>brain / subdural / bone windows as red / green / blue</figcaption></figure>"
                for overlay in jpegs.overlays {
                    let name = e(s.classNames[overlay.classIndex])
                    out += "<figure><img class=\"overlay\" data-class=\"\(name)\" alt=\"heatmap of \(name)\" src=\"data:image/jpeg;base64,\(overlay.jpeg)\"><figcaption>heatmap: \(name)\(positives.contains(overlay.classIndex) ? "" : " (most probable; not positive)")</figcaption></figure>"
                }
            }
            out += "</div>"
        }
        return out + "</article>"
    }

    func login(error: String?) -> String {
        page("Sign in", """
            <form id="login" method="post" action="/login"><label>Access token <input type="password" name="token" autocomplete="current-password" autofocus></label>
            <button type="submit">Sign in</button></form>
            \(error.map { "<p class=\"error\">\(e($0))</p>" } ?? "")
            """)
    }

    func message(_ title: String, _ text: String) -> String {
        page(title, "<p>\(e(text))</p><p><a href=\"/\">Back to the status page</a></p>")
    }

    /// HTML-escapes text and attribute values.
    func e(_ s: String) -> String {
        var out = ""
        out.reserveCapacity(s.utf8.count)
        for ch in s {
            switch ch {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.append(ch)
            }
        }
        return out
    }

    static let css = """
        body{font:15px/1.4 system-ui,sans-serif;margin:0;color:#1b1b1b;background:#f6f6f4}
        header{display:flex;gap:2em;align-items:center;background:#22313f;color:#fff;padding:.6em 1em}
        header a{color:#dfe8f0;margin-right:1.2em;text-decoration:none}
        main{padding:0 1em 2em;max-width:1100px}
        footer{font-size:12px;color:#555;padding:1em;border-top:1px solid #ccc}
        table{border-collapse:collapse;margin:.4em 0}td,th{border-bottom:1px solid #ddd;padding:.25em .7em;text-align:left}
        .badge{display:inline-block;padding:.2em .7em;border-radius:.3em;background:#ccc;margin-right:.5em;font-weight:bold}
        .ok{background:#2e7d32;color:#fff}.degraded{background:#f9a825}.fault{background:#c62828;color:#fff}
        .lamp-on,.lamp-blink{background:#c62828;color:#fff}
        tr.pos td,.pos h2{color:#b71c1c}td.over{color:#b71c1c;font-weight:bold}
        .slice{background:#fff;border:1px solid #ddd;padding:.5em 1em;margin:.8em 0}
        .images{display:flex;flex-wrap:wrap;gap:1em}figure{margin:0}figcaption{font-size:12px;color:#555}
        img.preview,img.overlay{width:256px;height:256px;image-rendering:pixelated}
        .error{color:#b71c1c;font-weight:bold}.none{color:#555}
        .flagged{color:#6a1b9a;font-weight:bold}p.ood.flagged{background:#f3e5f5;padding:.3em .6em;border-left:4px solid #6a1b9a}
        button.ack{background:#c62828;color:#fff;border:0;padding:.4em 1em;border-radius:.3em;font-weight:bold}
        """

    /// Progress for multi-slice uploads: the bytes sent, then "scoring" until the answer; the answer's results
    /// replace the page's. Without script the form posts as usual.
    static let script = """
        document.addEventListener('DOMContentLoaded', function () {
          var form = document.getElementById('upload');
          if (!form) return;
          form.addEventListener('submit', function (ev) {
            ev.preventDefault();
            var files = document.getElementById('files').files;
            var box = document.getElementById('progress'), bar = document.getElementById('progress-bar'), text = document.getElementById('progress-text');
            var err = document.getElementById('error');
            box.hidden = false; err.hidden = true; bar.value = 0;
            text.textContent = 'uploading ' + files.length + ' file' + (files.length === 1 ? '' : 's');
            var xhr = new XMLHttpRequest();
            xhr.open('POST', '/upload');
            xhr.upload.onprogress = function (e) { if (e.lengthComputable) bar.value = 100 * e.loaded / e.total; };
            xhr.upload.onload = function () { bar.removeAttribute('value'); text.textContent = 'scoring ' + files.length + ' file' + (files.length === 1 ? '' : 's') + '…'; };
            xhr.onload = function () {
              var doc = new DOMParser().parseFromString(xhr.responseText, 'text/html');
              var results = doc.getElementById('results'), e2 = doc.getElementById('error');
              document.getElementById('results').innerHTML = results ? results.innerHTML : '';
              if (e2 && !e2.hidden) { err.textContent = e2.textContent; err.hidden = false; }
              else if (xhr.status >= 400) { err.textContent = 'HTTP ' + xhr.status + ': ' + (doc.body ? doc.body.textContent.trim() : ''); err.hidden = false; }
              box.hidden = true;
            };
            xhr.onerror = function () { err.textContent = 'the upload failed (connection lost)'; err.hidden = false; box.hidden = true; };
            xhr.send(new FormData(form));
          });
        });
        """
}

extension SliceReport {
    /// The preview the model saw and each heatmap's overlay on it, as base64 JPEG (libjpeg-turbo) for the page
    /// and the API; nil when the slice has no preview.
    func base64JPEGs() -> (preview: String, overlays: [(classIndex: Int, jpeg: String)])? {
        guard let preview, let jpeg = try? JPEGCodec.encode(preview) else { return nil }
        let overlays = (score?.heatmaps ?? []).compactMap { h -> (classIndex: Int, jpeg: String)? in
            guard let overlay = try? JPEGCodec.encode(ClassActivationMap.overlay(h, on: preview)) else { return nil }
            return (h.classIndex, Data(overlay).base64EncodedString())
        }
        return (Data(jpeg).base64EncodedString(), overlays)
    }
}
