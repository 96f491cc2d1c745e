import Foundation
import Logging

/// The one place every acknowledge path goes through (button, serial ACK, web console) and the daemon's
/// single handle on the alert layer: it keeps the pending alerts, resends them, feeds the lamp and the serial
/// link, and combines the pipeline's health with the alert layer's own faults (SERIAL, GPIO).
///
/// Threads: a timer thread ticks the state machine on `clock` every 25 ms (resends, HB, lamp), a button thread
/// waits for edge events, the serial link has its own I/O thread. Callers never wait on a device.
public final class AlertCenter: @unchecked Sendable {
    struct Pending {
        var notice: AlertNotice
        var nextResend: Double
    }

    public let identity: ApplianceIdentity
    public let serialSettings: SerialSettings?
    public let lampSettings: LampSettings
    private let logger: Logger
    private let status: @Sendable () -> PipelineStatus
    private let onAcknowledge: @Sendable (_ id: String, _ by: AcknowledgeSource) -> Void
    private let clock: any AlertClock

    private let lock = NSLock()
    private let acknowledgeLock = NSRecursiveLock()
    private let threadsDone = NSCondition()
    private var _pending: [Pending] = []
    private var _faults: Set<FaultCode> = []
    private var pipelineState = HealthState.ok
    private var nextHeartbeat = Double.infinity
    private var nextHealthPoll = 0.0
    private var started = false
    private var running = false
    private var liveThreads = 0
    private var gpioFailure: String?

    private var lamp: LampController?
    private var link: SerialAlertLink?

    /// `chip`: injected chip (tests; the sim board passes a `SimulatedGPIOChip`); nil = open from the lamp
    /// settings (libgpiod when backend == "gpiod", a console-printing simulated chip when "sim"). A GPIO
    /// failure does not throw: the center goes to FAULT (code GPIO), sends a FAULT line at start and keeps the
    /// serial link working. `clock` runs the timers (tests pass a `ManualClock`).
    public init(identity: ApplianceIdentity, serial: SerialSettings?, lamp lampSettings: LampSettings,
                chip: (any GPIOChip)?, logger: Logger,
                status: @escaping @Sendable () -> PipelineStatus,
                onAcknowledge: @escaping @Sendable (_ id: String, _ by: AcknowledgeSource) -> Void,
                clock: any AlertClock = MonotonicClock()) {
        self.identity = identity
        serialSettings = serial
        self.lampSettings = lampSettings
        self.logger = logger
        self.status = status
        self.onAcknowledge = onAcknowledge
        self.clock = clock

        var gpioChip = chip
        if gpioChip == nil {
            switch lampSettings.backend {
            case "sim":
                gpioChip = SimulatedGPIOChip(name: "sim", lineCount: 64, sink: Self.consoleSink)
            case "gpiod":
                do { gpioChip = try LibgpiodChip(lookup: lampSettings.chip) } catch { gpioFailure = error.description }
            default:
                gpioFailure = "unknown lamp backend \"\(lampSettings.backend)\" (sim or gpiod)"
            }
        }
        if let gpioChip {
            do {
                lamp = try LampController(settings: lampSettings, chip: gpioChip, clock: clock, logger: logger) { [weak self] in
                    self?.acknowledgeAll(by: .button)
                }
            } catch {
                gpioFailure = error.description
            }
        }
        if let gpioFailure {
            _faults.insert(.gpio)
            logger.error("GPIO unavailable; lamp and button off, serial alerts continue", metadata: ["error": "\(gpioFailure)"])
        }
        if let serial {
            link = SerialAlertLink(settings: serial, identity: identity, logger: logger, callbacks: .init(
                heartbeat: { [weak self] in
                    self?.heartbeatFields() ?? HeartbeatFields(pipeline: PipelineStatus(state: .fault, queue: 0, p99Ms: nil), lamp: .off,
                                                               pending: 0, badInbound: 0)
                },
                reannounce: { [weak self] in self?.reannounce() ?? [] },
                command: { [weak self] in self?.handle($0) },
                connection: { [weak self] open, reason in self?.serialConnection(open: open, reason: reason) }))
        }
    }

    /// The sim board's console: lamp and buzzer transitions (ready-lamp pulses would drown them).
    static let consoleSink: @Sendable (String) -> Void = { line in
        guard !line.hasPrefix("ready:") else { return }
        FileHandle.standardOutput.write(Data((line + "\n").utf8))
    }

    deinit { if running { stop() } }

    // MARK: - The daemon's surface

    /// Lamp test, HELLO, the pending alerts (from the journal) announced again with the same ids, the lamp ON
    /// if any is pending; then the timer and button threads.
    public func start(pending: [AlertNotice]) {
        let now = clock.now()
        lock.lock()
        guard !started else { lock.unlock(); return }
        started = true
        running = true
        for alert in pending where !_pending.contains(where: { $0.notice.id == alert.id }) {
            _pending.append(Pending(notice: alert, nextResend: now + resendSeconds))
        }
        nextHeartbeat = now + (serialSettings?.heartbeatSeconds ?? .infinity)
        lock.unlock()
        pollHealth(now)
        lamp?.startLampTest()
        updateLamp()
        if let gpioFailure { link?.send(.fault(.gpio, gpioFailure)) }
        link?.start()
        logger.info("alerts started", metadata: ["pending": "\(pending.count)"])
        startThread("ichd-alert-timer") { center in
            center.tick()
            Thread.sleep(forTimeInterval: 0.025)
        }
        if lamp?.hasButton == true {
            startThread("ichd-button") { center in
                do { try center.lamp?.pumpButton(timeout: 0.2) } catch {
                    center.logger.error("acknowledge button: \(error)")
                    Thread.sleep(forTimeInterval: 1)
                }
            }
        }
    }

    /// ALERT line now, resent every `resend_s` until acknowledged; lamp ON. An id already pending is a no-op.
    public func raise(_ alert: AlertNotice) {
        let now = clock.now()
        let added: Bool = lock.withLock {
            guard !_pending.contains(where: { $0.notice.id == alert.id }) else { return false }
            _pending.append(Pending(notice: alert, nextResend: now + resendSeconds))
            return true
        }
        guard added else { return }
        logger.warning("ALERT", metadata: ["id": "\(alert.id)", "top": "\(alert.probabilities.top)",
                                           "lat_ms": "\(alert.latencyMs)"])
        link?.send(.alert(alert, sendAccession: serialSettings?.sendAccession ?? false))
        updateLamp()
    }

    /// RESULT line.
    public func publish(_ result: SeriesResultNotice) {
        logger.info("RESULT", metadata: ["result": "\(result.positive ? "POS" : "NEG")", "alert": "\(result.alertID ?? "-")"])
        link?.send(.result(result))
    }

    /// FAULT line for a daemon-side fault (MODEL, DISK, DROPDIR, BUDGET); the state itself comes from `status`.
    public func fault(_ code: FaultCode, _ message: String) {
        logger.error("FAULT", metadata: ["code": "\(code.rawValue)", "msg": "\(message)"])
        link?.send(.fault(code, message))
        pollHealth(clock.now())
    }

    /// false if `id` is not pending; else `onAcknowledge` (the journal) first, then the CLEAR line and the lamp.
    @discardableResult
    public func acknowledge(id: String, by: AcknowledgeSource) -> Bool {
        acknowledgeLock.lock()
        defer { acknowledgeLock.unlock() }
        guard lock.withLock({ _pending.contains { $0.notice.id == id } }) else { return false }
        onAcknowledge(id, by)
        lock.withLock { _pending.removeAll { $0.notice.id == id } }
        logger.info("acknowledged", metadata: ["id": "\(id)", "by": "\(by.rawValue)"])
        link?.send(.clear(id: id, by: by))
        updateLamp()
        return true
    }

    /// Acknowledges every pending alert; the ids acknowledged, in the order they were raised.
    @discardableResult
    public func acknowledgeAll(by: AcknowledgeSource) -> [String] {
        acknowledgeLock.lock()
        defer { acknowledgeLock.unlock() }
        return lock.withLock { _pending.map(\.notice.id) }.filter { acknowledge(id: $0, by: by) }
    }

    /// Liveness from the scoring loop: feeds the ready-lamp pulse. Call it every loop turn, idle turns too.
    public func scoringLoopAlive() { lamp?.scoringLoopAlive() }

    public var pending: [AlertNotice] { lock.withLock { _pending.map(\.notice) } }

    public var lampState: LampState {
        if let lamp { return lamp.state }
        let (count, health) = lock.withLock { (_pending.count, healthLocked) }
        return LampController.state(pending: count, health: health, testing: false)
    }

    /// The alert layer's own faults (SERIAL, GPIO).
    public var activeFaults: Set<FaultCode> { lock.withLock { _faults } }

    /// Worst of `status().state` and the alert layer's own faults.
    public var health: HealthState {
        let pipeline = status().state
        return max(pipeline, lock.withLock { _faults.isEmpty ? .ok : .fault })
    }

    /// Received serial lines that were not a valid ACK, STATUS or TEST.
    public var badInbound: Int { link?.badInbound ?? 0 }

    /// The serial link, for diagnostics (queue depth, lines written, reconnects); nil without `[serial]`.
    public var serialLink: SerialAlertLink? { link }

    /// The lamp, for diagnostics; nil when GPIO failed.
    public var lampController: LampController? { lamp }

    /// Bounded flush of the outgoing queue (1 s), lamp lines to their off state and released, port closed.
    public func stop() {
        lock.lock()
        let wasRunning = running
        running = false
        lock.unlock()
        threadsDone.lock()
        let giveUp = Date(timeIntervalSinceNow: 3)
        while liveThreads > 0 { if !threadsDone.wait(until: giveUp) { break } }
        threadsDone.unlock()
        link?.stop(flushSeconds: 1)
        lamp?.stop()
        if wasRunning { logger.info("alerts stopped") }
    }

    // MARK: - Timers

    /// Resends, heartbeats, health polling and the lamp at the clock's time. The timer thread calls it every
    /// 25 ms; a test driving a `ManualClock` may call it right after advancing the clock.
    public func tick() {
        let now = clock.now()
        var resend: [AlertNotice] = []
        var heartbeat = false
        var poll = false
        lock.withLock {
            for i in _pending.indices where now >= _pending[i].nextResend {
                resend.append(_pending[i].notice)
                _pending[i].nextResend = now + resendSeconds
            }
            if now >= nextHeartbeat {
                heartbeat = true
                nextHeartbeat = now + (serialSettings?.heartbeatSeconds ?? .infinity)
            }
            if now >= nextHealthPoll {
                poll = true
                nextHealthPoll = now + 0.5
            }
        }
        if poll { pollHealth(now) }
        for alert in resend { link?.send(.alert(alert, sendAccession: serialSettings?.sendAccession ?? false)) }
        if heartbeat { link?.sendHeartbeat() }
        lamp?.tick()
        if let failure = lamp?.failure {
            let new = lock.withLock { _faults.insert(.gpio).inserted }
            if new {
                logger.error("FAULT GPIO", metadata: ["msg": "\(failure)"])
                link?.send(.fault(.gpio, failure))
                updateLamp()
            }
        }
    }

    private var resendSeconds: Double { serialSettings?.resendSeconds ?? .infinity }

    private var healthLocked: HealthState { max(pipelineState, _faults.isEmpty ? .ok : .fault) }

    private func pollHealth(_ now: Double) {
        let state = status().state
        lock.withLock { pipelineState = state }
        updateLamp()
    }

    private func updateLamp() {
        let (count, health) = lock.withLock { (_pending.count, healthLocked) }
        lamp?.update(pending: count, health: health)
    }

    private func startThread(_ name: String, _ body: @escaping @Sendable (AlertCenter) -> Void) {
        threadsDone.withLock { liveThreads += 1 }
        let thread = Thread { [self] in
            while lock.withLock({ running }) { body(self) }
            threadsDone.withLock {
                liveThreads -= 1
                threadsDone.broadcast()
            }
        }
        thread.name = name
        thread.start()
    }

    // MARK: - Serial callbacks (on the link's I/O thread)

    func heartbeatFields() -> HeartbeatFields {
        var pipeline = status()
        // The lamp learns the state this HB reports, so the HB's `lamp` matches its `state`.
        lock.withLock { pipelineState = pipeline.state }
        updateLamp()
        let (count, faults) = lock.withLock { (_pending.count, _faults) }
        pipeline.state = max(pipeline.state, faults.isEmpty ? .ok : .fault)
        return HeartbeatFields(pipeline: pipeline, lamp: lampState, pending: count, badInbound: badInbound)
    }

    private func reannounce() -> [AlertNotice] {
        let now = clock.now()
        return lock.withLock {
            for i in _pending.indices { _pending[i].nextResend = now + resendSeconds }
            return _pending.map(\.notice)
        }
    }

    private func handle(_ command: IntegratorCommand) {
        switch command {
        case .acknowledge(let wireID):
            let id = lock.withLock { _pending.first { ApplianceMessage.wireID($0.notice.id) == wireID }?.notice.id }
            if let id { acknowledge(id: id, by: .serial) } else { logger.info("ACK for an alert not pending", metadata: ["id": "\(wireID)"]) }
        case .status:
            link?.sendHeartbeat(urgent: true)
        case .test:
            lamp?.startLampTest()
        }
    }

    private func serialConnection(open: Bool, reason: String) {
        let changed: Bool = lock.withLock {
            open ? _faults.remove(.serial) != nil : _faults.insert(.serial).inserted
        }
        if !open && changed {
            logger.error("FAULT SERIAL", metadata: ["msg": "\(reason)"])
            link?.send(.fault(.serial, reason))
        }
        if changed { updateLamp() }
    }
}
