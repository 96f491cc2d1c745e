import Foundation
import Logging

/// The alert lamp, the optional ready lamp and buzzer, and the acknowledge button.
///
/// Alert lamp: ON steady while any alert is unacknowledged; slow BLINK (1 s on, 1 s off, starting lit) in
/// FAULT or DEGRADED with nothing pending; OFF otherwise; every output lit for `lampTestSeconds` on a lamp
/// test (at start and on TEST). Buzzer: 0.5 s every 2 s while any alert is unacknowledged. Ready lamp:
/// toggles every 0.5 s while `scoringLoopAlive()` came within `readyStaleSeconds`, dark otherwise, so a
/// stalled scoring loop shows a dark ready lamp (and a dead process a frozen one). Button: a rising (logical)
/// edge with no edge in the `button_debounce_ms` before it is a press (bounce on press and on release is
/// ignored, judged on the kernel's event timestamps).
///
/// Everything runs on `clock`: `tick()` applies the state at the clock's time, so a test drives it exactly.
public final class LampController: @unchecked Sendable {
    public static let lampTestSeconds = 1.0
    public static let blinkHalfPeriod = 1.0
    public static let readyHalfPeriod = 0.5
    public static let buzzerOnSeconds = 0.5
    public static let buzzerPeriod = 2.0
    public static let consumer = "ichd"

    public let settings: LampSettings
    private let clock: any AlertClock
    private let logger: Logger
    private let onPress: @Sendable () -> Void
    private let lock = NSLock()
    private let buttonLock = NSLock()

    private var alertLamp: (any GPIOOutputLine)?
    private var readyLamp: (any GPIOOutputLine)?
    private var buzzer: (any GPIOOutputLine)?
    private var button: (any GPIOInputLine)?
    private var driven: [ObjectIdentifier: Bool] = [:]

    private var pending = 0
    private var health = HealthState.ok
    private var testUntil: Double?
    private var shownSince: Double
    private var lastShown: LampState = .off
    private var pendingSince: Double?
    private var lastAlive: Double?
    private var pulseSince: Double?
    private var lastButtonEdge: Double?
    private var stopped = false
    private var _presses = 0
    private var _failure: String?

    /// The pure rule: what the alert lamp shows.
    public static func state(pending: Int, health: HealthState, testing: Bool) -> LampState {
        if testing || pending > 0 { return .on }
        return health == .ok ? .off : .blink
    }

    /// Requests the configured lines (consumer `ichd`), every output off. `onPress` runs on the thread that
    /// calls `pumpButton`.
    public init(settings: LampSettings, chip: any GPIOChip, clock: any AlertClock, logger: Logger,
                onPress: @escaping @Sendable () -> Void) throws(GPIOError) {
        self.settings = settings
        self.clock = clock
        self.logger = logger
        self.onPress = onPress
        shownSince = clock.now()
        let low = settings.activeLow
        alertLamp = try chip.requestOutput(offset: settings.alertLine, consumer: Self.consumer, initial: false, activeLow: low, label: "lamp")
        if let line = settings.readyLine {
            readyLamp = try chip.requestOutput(offset: line, consumer: Self.consumer, initial: false, activeLow: low, label: "ready")
        }
        if let line = settings.buzzerLine {
            buzzer = try chip.requestOutput(offset: line, consumer: Self.consumer, initial: false, activeLow: low, label: "buzzer")
        }
        if let line = settings.buttonLine {
            button = try chip.requestInput(offset: line, consumer: Self.consumer, activeLow: low, label: "button")
        }
        for line in [alertLamp, readyLamp, buzzer].compactMap({ $0 }) { driven[ObjectIdentifier(line)] = false }
    }

    /// New inputs of the state machine; applied at once.
    public func update(pending: Int, health: HealthState) {
        lock.withLock {
            self.pending = pending
            self.health = health
            applyLocked(clock.now())
        }
    }

    /// Lights every output for `lampTestSeconds`.
    public func startLampTest() {
        lock.withLock {
            let now = clock.now()
            testUntil = now + Self.lampTestSeconds
            logger.info("lamp test")
            applyLocked(now)
        }
    }

    /// Liveness of the scoring loop (the same beat that feeds the systemd watchdog).
    public func scoringLoopAlive() {
        lock.withLock {
            let now = clock.now()
            if !isAliveLocked(now) { pulseSince = now }
            lastAlive = now
            applyLocked(now)
        }
    }

    /// Applies the state machine at the clock's time (blink, pulse and test timing).
    public func tick() { lock.withLock { applyLocked(clock.now()) } }

    /// What the alert lamp shows now (ON during a lamp test).
    public var state: LampState { lock.withLock { shownLocked(clock.now()) } }

    /// Whether the ready lamp is pulsing (the scoring loop is alive).
    public var readyPulsing: Bool { lock.withLock { isAliveLocked(clock.now()) } }

    /// Accepted button presses.
    public var presses: Int { lock.withLock { _presses } }

    public var hasButton: Bool { lock.withLock { button != nil } }

    /// The first error driving a line (the chip went away, the line was taken): the GPIO fault's message.
    public var failure: String? { lock.withLock { _failure } }

    /// Waits up to `timeout` for button edges and handles those that came; true when a press was accepted.
    @discardableResult
    public func pumpButton(timeout: Double) throws(GPIOError) -> Bool {
        buttonLock.lock()
        defer { buttonLock.unlock() }
        guard let button = lock.withLock({ stopped ? nil : self.button }) else { return false }
        var accepted = false
        var wait = timeout
        while let edge = try button.waitEdge(timeout: wait) {
            wait = 0
            if handleEdge(edge) { accepted = true }
        }
        return accepted
    }

    /// Debounce: a logical rising edge counts when no edge came within `button_debounce_ms` before it.
    func handleEdge(_ edge: GPIOEdgeEvent) -> Bool {
        let debounce = Double(settings.buttonDebounceMs) / 1000
        let isPress: Bool = lock.withLock {
            defer { lastButtonEdge = edge.timestamp }
            guard edge.rising else { return false }
            if let last = lastButtonEdge, edge.timestamp - last < debounce { return false }
            _presses += 1
            return true
        }
        if isPress {
            logger.info("acknowledge button pressed")
            onPress()
        }
        return isPress
    }

    /// Every output to its off level, then every line released. Idempotent.
    public func stop() {
        lock.lock()
        if !stopped {
            stopped = true
            for line in [alertLamp, readyLamp, buzzer].compactMap({ $0 }) {
                do { try line.set(false) } catch { logger.error("GPIO: \(error)") }
            }
            alertLamp = nil
            readyLamp = nil
            buzzer = nil
        }
        lock.unlock()
        // The button thread may be waiting on the line: release it once that wait ends.
        buttonLock.withLock { lock.withLock { button = nil } }
    }

    // MARK: - State machine (lock held)

    private func isAliveLocked(_ now: Double) -> Bool {
        guard let lastAlive else { return false }
        return now - lastAlive < settings.readyStaleSeconds
    }

    private func testingLocked(_ now: Double) -> Bool {
        if let until = testUntil, now < until { return true }
        return false
    }

    private func shownLocked(_ now: Double) -> LampState {
        Self.state(pending: pending, health: health, testing: testingLocked(now))
    }

    private func applyLocked(_ now: Double) {
        guard !stopped else { return }
        let testing = testingLocked(now)
        if !testing { testUntil = nil }
        let shown = Self.state(pending: pending, health: health, testing: testing)
        if shown != lastShown {
            logger.debug("lamp \(shown.rawValue)")
            lastShown = shown
            shownSince = now
        }
        if pending > 0 { pendingSince = pendingSince ?? now } else { pendingSince = nil }
        let lampOn: Bool
        switch shown {
        case .on: lampOn = true
        case .off: lampOn = false
        case .blink: lampOn = Int(((now - shownSince) / Self.blinkHalfPeriod).rounded(.down)) % 2 == 0
        }
        drive(alertLamp, lampOn)
        if let since = pendingSince, !testing {
            drive(buzzer, (now - since).truncatingRemainder(dividingBy: Self.buzzerPeriod) < Self.buzzerOnSeconds)
        } else {
            drive(buzzer, testing)
        }
        if testing {
            drive(readyLamp, true)
        } else if isAliveLocked(now), let since = pulseSince {
            drive(readyLamp, Int(((now - since) / Self.readyHalfPeriod).rounded(.down)) % 2 == 0)
        } else {
            drive(readyLamp, false)
        }
    }

    private func drive(_ line: (any GPIOOutputLine)?, _ on: Bool) {
        guard let line else { return }
        let key = ObjectIdentifier(line)
        guard driven[key] != on else { return }
        do {
            try line.set(on)
            driven[key] = on
        } catch {
            if _failure == nil { logger.error("GPIO: \(error)") }
            _failure = _failure ?? error.description
        }
    }
}
