// TEMPORARY (lead's main worktree only): the AlertCenter surface the alerts branch implements. Deleted at merge.
import Foundation
import Logging

public struct SerialSettings: Sendable, Equatable {
    public var device: String; public var baud: Int; public var rtscts: Bool; public var heartbeatSeconds: Double
    public var resendSeconds: Double; public var sendAccession: Bool
    public init(device: String, baud: Int, rtscts: Bool, heartbeatSeconds: Double, resendSeconds: Double, sendAccession: Bool) {
        self.device = device; self.baud = baud; self.rtscts = rtscts; self.heartbeatSeconds = heartbeatSeconds
        self.resendSeconds = resendSeconds; self.sendAccession = sendAccession
    }
}
public struct LampSettings: Sendable, Equatable {
    public var backend: String; public var chip: String; public var alertLine: UInt32; public var readyLine: UInt32?
    public var buzzerLine: UInt32?; public var buttonLine: UInt32?; public var activeLow: Bool; public var buttonDebounceMs: Int
    public init(backend: String, chip: String, alertLine: UInt32, readyLine: UInt32?, buzzerLine: UInt32?, buttonLine: UInt32?, activeLow: Bool, buttonDebounceMs: Int) {
        self.backend = backend; self.chip = chip; self.alertLine = alertLine; self.readyLine = readyLine; self.buzzerLine = buzzerLine
        self.buttonLine = buttonLine; self.activeLow = activeLow; self.buttonDebounceMs = buttonDebounceMs
    }
}
public struct ApplianceIdentity: Sendable {
    public var firmware: String; public var modelID: String; public var modelSHA: String; public var board: String; public var bootID: String
    public init(firmware: String, modelID: String, modelSHA: String, board: String, bootID: String) {
        self.firmware = firmware; self.modelID = modelID; self.modelSHA = modelSHA; self.board = board; self.bootID = bootID
    }
}
public final class AlertCenter: @unchecked Sendable {
    let lock = NSLock(); var _pending: [AlertNotice] = []; let onAck: @Sendable (String, AcknowledgeSource) -> Void; let logger: Logger
    let status: @Sendable () -> PipelineStatus
    public init(identity: ApplianceIdentity, serial: SerialSettings?, lamp: LampSettings, chip: (any GPIOChip)?, logger: Logger,
                status: @escaping @Sendable () -> PipelineStatus, onAcknowledge: @escaping @Sendable (_ id: String, _ by: AcknowledgeSource) -> Void) {
        onAck = onAcknowledge; self.logger = logger; self.status = status
    }
    public func start(pending: [AlertNotice]) { lock.withLock { _pending = pending }; for p in pending { print("STUB ALERT(again) \(p.id)") } }
    public func raise(_ alert: AlertNotice) { lock.withLock { if !_pending.contains(where: { $0.id == alert.id }) { _pending.append(alert) } }; print("STUB ALERT \(alert.id) slice \(alert.slice ?? -1) any \(alert.probabilities["any"] ?? -1)") }
    public func publish(_ result: SeriesResultNotice) { print("STUB RESULT \(result.positive ? "POS" : "NEG") scored \(result.scored) alert \(result.alertID ?? "-")") }
    public func fault(_ code: FaultCode, _ message: String) { print("STUB FAULT \(code.rawValue) \(message)") }
    @discardableResult public func acknowledge(id: String, by: AcknowledgeSource) -> Bool {
        let found = lock.withLock { _pending.contains { $0.id == id } }; guard found else { return false }
        onAck(id, by); lock.withLock { _pending.removeAll { $0.id == id } }; return true
    }
    @discardableResult public func acknowledgeAll(by: AcknowledgeSource) -> [String] { let ids = pending.map(\.id); for i in ids { acknowledge(id: i, by: by) }; return ids }
    public func scoringLoopAlive() {}
    public var pending: [AlertNotice] { lock.withLock { _pending } }
    public var lampState: LampState { pending.isEmpty ? .off : .on }
    public var activeFaults: Set<FaultCode> { [] }
    public var health: HealthState { status().state }
    public var badInbound: Int { 0 }
    public func stop() {}
}
