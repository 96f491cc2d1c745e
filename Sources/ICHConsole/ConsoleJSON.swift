import Foundation
import ICHAlerts
import ICHDecision
import ICHEngine
import ICHIngest

/// The JSON API's bodies (docs/console.md and docs/console-openapi.yaml describe them). Probabilities are keyed
/// by the model's class names; times are ISO 8601; identifying values appear only with `show_identifiers`.
enum ConsoleJSON {
    static func status(_ s: ConsoleStatus, showIdentifiers: Bool) -> [String: Any] {
        let iso = ISO8601DateFormatter()
        return [
            "mode": s.mode, "health": s.health.rawValue, "faults": s.faults, "lamp": s.lamp?.rawValue ?? NSNull(),
            "model": ["id": s.modelID, "sha": s.modelSHA, "engine": s.engine, "classes": s.classNames,
                      "thresholds": keyed(s.classNames, s.thresholds)] as [String: Any],
            "queue": s.queue, "slices": s.slices,
            "latency_ms": ["p50": s.p50Ms ?? NSNull(), "p95": s.p95Ms ?? NSNull(), "p99": s.p99Ms ?? NSNull(),
                           "budget": s.budgetMs, "over_budget": s.overBudget] as [String: Any],
            "decision": ["adjacent_slices": s.adjacentSlices],
            "recent_series": s.recentResults.map { r -> [String: Any] in
                var o: [String: Any] = ["result": r.result.positive ? "POS" : "NEG", "scored": r.result.scored, "skipped": r.result.skipped,
                                        "rejected": r.result.rejected, "alert": r.result.alertID ?? NSNull(),
                                        "finished_at": iso.string(from: r.finishedAt), "maxima": protocolKeyed(r.result.maxima),
                                        "ood": r.result.ood.map { rounded($0, places: 2) } ?? NSNull()]
                if showIdentifiers { o["series_uid"] = r.result.seriesUID; o["study_uid"] = r.result.studyUID }
                return o
            },
            "pending_alerts": s.pendingAlerts.map { a -> [String: Any] in
                var o: [String: Any] = ["id": a.id, "raised_at": iso.string(from: a.raisedAt), "slice": a.slice ?? NSNull(),
                                        "latency_ms": a.latencyMs, "probabilities": protocolKeyed(a.probabilities)]
                if showIdentifiers {
                    o["series_uid"] = a.seriesUID
                    o["study_uid"] = a.studyUID
                    if let acc = a.accession { o["accession"] = acc }
                }
                return o
            },
        ]
    }

    static func score(_ reports: [SliceReport], milliseconds: Double, status: ConsoleStatus, images: Bool, showIdentifiers: Bool) -> [String: Any] {
        var object: [String: Any] = [
            "model": ["id": status.modelID, "sha": status.modelSHA, "engine": status.engine],
            "ms": rounded(milliseconds),
            "slices": reports.map { slice($0, images: images, showIdentifiers: showIdentifiers) },
        ]
        if let e = SliceReport.seriesDecision(reports, adjacentSlices: status.adjacentSlices) {
            let f = e.finding
            object["series"] = [
                "urgent": e.isUrgent, "adjacent_slices": e.adjacentSlices, "scored": f.slicesScored, "skipped": e.skipped,
                "rejected": reports.filter { if case .rejected = $0.outcome { return true } else { return false } }.count,
                "maxima": keyed(f.classNames, f.maxProbabilities), "positive_classes": f.positiveClasses,
                "ood": f.ood.map { rounded(Double($0), places: 3) } ?? NSNull(),
                "out_of_distribution": f.ood == nil ? NSNull() : f.isOutOfDistribution,
            ] as [String: Any]
        } else {
            object["series"] = NSNull()
        }
        return object
    }

    static func slice(_ r: SliceReport, images: Bool, showIdentifiers: Bool) -> [String: Any] {
        var o: [String: Any] = ["file": r.file, "frame": r.frame ?? NSNull(), "ms": rounded(r.milliseconds), "instance": r.instance ?? NSNull()]
        switch r.outcome {
        case .scored(let s):
            o["outcome"] = "scored"
            o["probabilities"] = keyed(s.classNames, s.probabilities)
            o["logits"] = keyed(s.classNames, s.logits)
            o["thresholds"] = keyed(s.classNames, s.thresholds)
            o["positive"] = s.positives.map { s.classNames[$0] }
            o["ood"] = s.ood.map { rounded(Double($0), places: 3) } ?? NSNull()
            o["out_of_distribution"] = s.ood == nil ? NSNull() : s.isOutOfDistribution
            if images, r.preview != nil {
                let jpegs = r.base64JPEGs()
                o["preview_jpeg"] = jpegs?.preview ?? NSNull()
                o["heatmaps_jpeg"] = Dictionary(jpegs?.overlays.map { (s.classNames[$0.classIndex], $0.jpeg) } ?? [], uniquingKeysWith: { a, _ in a })
            }
        case .skipped(let reason):
            o["outcome"] = "skipped"
            o["reason"] = reason
        case .rejected(let code, let message):
            o["outcome"] = "rejected"
            o["code"] = code
            o["reason"] = message
        }
        if showIdentifiers, !r.identifiers.isEmpty { o["identifiers"] = r.identifiers }
        return o
    }

    static func keyed(_ names: [String], _ values: [Float]) -> [String: Double] {
        Dictionary(zip(names, values.map { rounded(Double($0), places: 6) }), uniquingKeysWith: { a, _ in a })
    }

    static func protocolKeyed(_ p: ClassProbabilities) -> [String: Any] {
        Dictionary(uniqueKeysWithValues: zip(ClassProbabilities.keys, p.values.map { v -> Any in v ?? NSNull() }))
    }

    static func rounded(_ x: Double, places: Int = 1) -> Double {
        let f = pow(10, Double(places))
        return (x * f).rounded() / f
    }
}
