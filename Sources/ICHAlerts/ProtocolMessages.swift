import Foundation

/// An HB line's fields: the pipeline's state, queue and latency as sent (its `state` already combined with the
/// alert layer's own faults; latencies nil = unknown, sent as `-`), and the alert layer's lamp, pending count
/// and refused inbound lines.
public struct HeartbeatFields: Sendable, Equatable {
    public var pipeline: PipelineStatus
    public var lamp: LampState
    public var pending: Int
    public var badInbound: Int

    public init(pipeline: PipelineStatus, lamp: LampState, pending: Int, badInbound: Int) {
        self.pipeline = pipeline
        self.lamp = lamp
        self.pending = pending
        self.badInbound = badInbound
    }
}

/// A line the appliance sends, before it has a SEQ (the link numbers lines as it writes them, so that SEQ
/// restarts at 1 with each HELLO whatever was queued).
public enum ApplianceMessage: Sendable, Equatable {
    case hello(ApplianceIdentity)
    case heartbeat(HeartbeatFields)
    case alert(AlertNotice, sendAccession: Bool)
    case result(SeriesResultNotice)
    case fault(FaultCode, String)
    case clear(id: String, by: AcknowledgeSource)

    public var type: LineType {
        switch self {
        case .hello: .hello
        case .heartbeat: .heartbeat
        case .alert: .alert
        case .result: .result
        case .fault: .fault
        case .clear: .clear
        }
    }

    /// The alert id as it goes on the wire (ACK lines are matched against this).
    public static func wireID(_ id: String) -> String { LineProtocol.encodeValue(id) }

    public func line(seq: Int) -> ProtocolLine {
        let v = { (s: String) in LineProtocol.encodeValue(s) }
        let count = { (n: Int) in String(max(0, n)) }
        var f: [ProtocolField] = []
        switch self {
        case .hello(let id):
            f = [.init("fw", v(id.firmware)), .init("model", v(id.modelID)), .init("model_sha", v(id.modelSHA)),
                 .init("board", v(id.board)), .init("boot", v(id.bootID))]
        case .heartbeat(let hb):
            let p = hb.pipeline
            f = [.init("state", p.state.rawValue), .init("queue", count(p.queue)),
                 .init("p99_ms", p.p99Ms.map(count) ?? "-"), .init("lamp", hb.lamp.rawValue),
                 .init("pending", count(hb.pending)), .init("bad_in", count(hb.badInbound)),
                 .init("p50_ms", p.p50Ms.map(count) ?? "-"), .init("p95_ms", p.p95Ms.map(count) ?? "-"),
                 .init("over", count(p.overBudget))]
        case .alert(let a, let sendAccession):
            f = [.init("id", v(a.id)), .init("t", LineProtocol.timestamp(a.raisedAt)), .init("study", v(a.studyUID)),
                 .init("series", v(a.seriesUID)), .init("slice", a.slice.map(count) ?? "-")]
            f += Self.classFields(a.probabilities)
            f += [.init("top", a.probabilities.top), .init("lat_ms", count(a.latencyMs))]
            if sendAccession, let acc = a.accession { f.append(.init("acc", v(acc))) }
        case .result(let r):
            f = [.init("study", v(r.studyUID)), .init("series", v(r.seriesUID)), .init("result", r.positive ? "POS" : "NEG"),
                 .init("scored", count(r.scored)), .init("skipped", count(r.skipped)), .init("rejected", count(r.rejected))]
            f += Self.classFields(r.maxima)
            f.append(.init("alert", r.alertID.map(v) ?? "-"))
            // Added after the first v1 readers (which ignore keys they do not know): always sent, `-` when unknown.
            f.append(.init("ood", r.ood.map(LineProtocol.oodScore) ?? "-"))
        case .fault(let code, let message):
            f = [.init("code", code.rawValue), .init("msg", LineProtocol.encodeValue(message, limit: LineProtocol.maxMessageLength))]
        case .clear(let id, let by):
            f = [.init("id", v(id)), .init("by", by.rawValue)]
        }
        return ProtocolLine(seq: seq, type: type.rawValue, fields: f)
    }

    static func classFields(_ p: ClassProbabilities) -> [ProtocolField] {
        ClassProbabilities.keys.map { ProtocolField($0, LineProtocol.probability(p[$0])) }
    }
}

/// A line an integrator sends.
public enum IntegratorCommand: Sendable, Equatable {
    /// `ACK id=...`: the wire form of the id.
    case acknowledge(id: String)
    case status
    case test

    public init?(_ line: ProtocolLine) {
        switch line.lineType {
        case .ack: guard let id = line["id"] else { return nil }; self = .acknowledge(id: id)
        case .status: self = .status
        case .test: self = .test
        default: return nil
        }
    }

    public func line(seq: Int) -> ProtocolLine {
        switch self {
        case .acknowledge(let id): ProtocolLine(seq: seq, type: LineType.ack.rawValue, fields: [.init("id", LineProtocol.encodeValue(id))])
        case .status: ProtocolLine(seq: seq, type: LineType.status.rawValue)
        case .test: ProtocolLine(seq: seq, type: LineType.test.rawValue)
        }
    }
}
