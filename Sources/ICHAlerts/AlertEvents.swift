import Foundation

// What the alert layer receives from the daemon: decisions, not tensors or DICOM. These types are the
// contract between the daemon (`ichd run`) and the voices of the appliance (serial line, lamp, console).

/// The appliance's health as reported in HB lines, on the lamp (slow blink) and in the console.
public enum HealthState: String, Sendable, Comparable, CaseIterable {
    case ok = "OK"
    case degraded = "DEGRADED"
    case fault = "FAULT"

    private var rank: Int { self == .ok ? 0 : self == .degraded ? 1 : 2 }
    public static func < (a: Self, b: Self) -> Bool { a.rank < b.rank }
}

/// `FAULT` line codes (docs/serial-protocol.md).
public enum FaultCode: String, Sendable, CaseIterable {
    case model = "MODEL"
    case disk = "DISK"
    case dropFolder = "DROPDIR"
    case gpio = "GPIO"
    case serial = "SERIAL"
    case budget = "BUDGET"
}

/// Who acknowledged an alert (`CLEAR` line's `by`).
public enum AcknowledgeSource: String, Sendable, CaseIterable {
    case button, serial, web
}

/// What the alert lamp shows.
public enum LampState: String, Sendable {
    case off = "OFF"
    case on = "ON"
    case blink = "BLINK"
}

/// Per-class probabilities under the serial protocol's class keys.
public struct ClassProbabilities: Sendable, Equatable {
    /// Protocol keys in protocol order.
    public static let keys = ["any", "edh", "iph", "ivh", "sah", "sdh"]
    /// RSNA class names (the model's) to protocol keys.
    public static let keyForClassName = ["any": "any", "epidural": "edh", "intraparenchymal": "iph",
                                         "intraventricular": "ivh", "subarachnoid": "sah", "subdural": "sdh"]

    /// Indexed like `keys`; a class the model does not have is nil.
    public var values: [Double?]

    public init(values: [Double?]) {
        precondition(values.count == Self.keys.count)
        self.values = values
    }

    /// From a model's class names (RSNA names or protocol keys) and probabilities.
    public init(classNames: [String], probabilities: [Float]) {
        var values = [Double?](repeating: nil, count: Self.keys.count)
        for (name, p) in zip(classNames, probabilities) {
            let key = Self.keyForClassName[name] ?? name
            if let i = Self.keys.firstIndex(of: key) { values[i] = Double(p) }
        }
        self.values = values
    }

    public subscript(key: String) -> Double? {
        Self.keys.firstIndex(of: key).flatMap { values[$0] }
    }

    /// The subtype key (not `any`) with the highest probability; `any` when the model has no subtypes.
    public var top: String {
        var best: (key: String, p: Double)?
        for (i, key) in Self.keys.enumerated() where key != "any" {
            if let p = values[i], best == nil || p > best!.p { best = (key, p) }
        }
        return best?.key ?? "any"
    }
}

/// An urgent finding, raised as soon as a series holds enough evidence (the `ALERT` line).
public struct AlertNotice: Sendable, Equatable {
    /// Stable across resends and restarts (the daemon's journal assigns it).
    public var id: String
    public var raisedAt: Date
    public var studyUID: String
    public var seriesUID: String
    /// Instance number of the slice that completed the evidence.
    public var slice: Int?
    public var probabilities: ClassProbabilities
    /// File close of the completing slice to the decision, in milliseconds.
    public var latencyMs: Int
    /// Sent only when `send_accession = true`; never logged.
    public var accession: String?

    public init(id: String, raisedAt: Date, studyUID: String, seriesUID: String, slice: Int?,
                probabilities: ClassProbabilities, latencyMs: Int, accession: String? = nil) {
        self.id = id
        self.raisedAt = raisedAt
        self.studyUID = studyUID
        self.seriesUID = seriesUID
        self.slice = slice
        self.probabilities = probabilities
        self.latencyMs = latencyMs
        self.accession = accession
    }
}

/// A finished series (the `RESULT` line).
public struct SeriesResultNotice: Sendable, Equatable {
    public var studyUID: String
    public var seriesUID: String
    public var positive: Bool
    public var scored: Int
    public var skipped: Int
    public var rejected: Int
    /// Per-class maxima over the scored slices.
    public var maxima: ClassProbabilities
    /// The series' alert id, or nil (`-` on the line).
    public var alertID: String?
    /// The series' out-of-distribution score (1 and above: unlike the model's training data, its probabilities
    /// are not evidence), or nil when the model has no summary or no slice was scored (`-` on the line).
    public var ood: Double?

    public init(studyUID: String, seriesUID: String, positive: Bool, scored: Int, skipped: Int, rejected: Int,
                maxima: ClassProbabilities, alertID: String?, ood: Double? = nil) {
        self.ood = ood
        self.studyUID = studyUID
        self.seriesUID = seriesUID
        self.positive = positive
        self.scored = scored
        self.skipped = skipped
        self.rejected = rejected
        self.maxima = maxima
        self.alertID = alertID
    }
}

/// The daemon's side of a heartbeat: what only the pipeline knows.
public struct PipelineStatus: Sendable, Equatable {
    /// Worst of the daemon's own conditions (model, disk, drop folder, budget); the alert layer combines it
    /// with its own (serial, GPIO).
    public var state: HealthState
    public var queue: Int
    public var p99Ms: Int?
    public var p50Ms: Int?
    public var p95Ms: Int?
    /// Slices over `budget.slice_ms` since start.
    public var overBudget: Int

    public init(state: HealthState, queue: Int, p99Ms: Int?, p50Ms: Int? = nil, p95Ms: Int? = nil, overBudget: Int = 0) {
        self.p50Ms = p50Ms
        self.p95Ms = p95Ms
        self.overBudget = overBudget
        self.state = state
        self.queue = queue
        self.p99Ms = p99Ms
    }
}
