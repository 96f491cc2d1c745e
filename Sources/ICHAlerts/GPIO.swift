import CGPIOD
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Why a GPIO operation failed, with the errno libgpiod left (2 = no such chip, 16 = line busy, 13 = permission).
public struct GPIOError: Error, Equatable, CustomStringConvertible {
    public let operation: String
    public let code: Int32

    public init(operation: String, code: Int32) {
        self.operation = operation
        self.code = code
    }

    public var description: String {
        "\(operation): \(String(cString: strerror(code))) (errno \(code))"
    }
}

/// An output line held for the lamp (or a buzzer). Released on deinit; the kernel does not promise the
/// line's level after release, so the owner drives it off before letting go. Levels are logical: with
/// `activeLow` the chip inverts them (libgpiod's `GPIOD_LINE_REQUEST_FLAG_ACTIVE_LOW`).
public protocol GPIOOutputLine: AnyObject {
    func set(_ on: Bool) throws(GPIOError)
}

/// One edge seen on an input line, in logical terms: `rising` = the line became active (a press, for a
/// button, whatever its wiring). `timestamp` is the kernel's (seconds, monotonic on Linux >= 5.7); only
/// differences between two events of one line mean anything.
public struct GPIOEdgeEvent: Sendable, Equatable {
    public var rising: Bool
    public var timestamp: Double

    public init(rising: Bool, timestamp: Double) {
        self.rising = rising
        self.timestamp = timestamp
    }
}

/// An input line requested for both edge events (the acknowledge button).
public protocol GPIOInputLine: AnyObject {
    /// The current logical level (`gpiod_line_get_value`).
    func read() throws(GPIOError) -> Bool
    /// Waits up to `timeout` seconds for the next edge (`gpiod_line_event_wait` + `_read`); nil on timeout.
    func waitEdge(timeout: Double) throws(GPIOError) -> GPIOEdgeEvent?
}

/// A GPIO chip as the alert layer sees it. The real board uses `LibgpiodChip`; tests and the simulated board
/// use `SimulatedGPIOChip` behind the same protocol. `label` names the line's role ("lamp", "button") in
/// error messages and on the simulated chip's console; it is not sent to the kernel (the consumer is).
public protocol GPIOChip: AnyObject {
    var name: String { get }
    func requestOutput(offset: UInt32, consumer: String, initial: Bool, activeLow: Bool, label: String) throws(GPIOError)
        -> any GPIOOutputLine
    func requestInput(offset: UInt32, consumer: String, activeLow: Bool, label: String) throws(GPIOError)
        -> any GPIOInputLine
}

extension GPIOChip {
    public func requestOutput(offset: UInt32, consumer: String, initial: Bool) throws(GPIOError) -> any GPIOOutputLine {
        try requestOutput(offset: offset, consumer: consumer, initial: initial, activeLow: false, label: "line \(offset)")
    }
}

// MARK: - libgpiod v1.6

/// libgpiod v1.6 (Debian 12). Every libgpiod call lives in this file: v2.x changed the API.
public final class LibgpiodChip: GPIOChip {
    public let name: String
    private let chip: OpaquePointer

    /// `lookup` is what gpiod_chip_open_lookup accepts: a name ("gpiochip0"), a path, a label or a number.
    public init(lookup: String) throws(GPIOError) {
        guard let chip = gpiod_chip_open_lookup(lookup) else {
            throw GPIOError(operation: "open GPIO chip \"\(lookup)\"", code: errno)
        }
        self.chip = chip
        name = String(cString: gpiod_chip_name(chip))
    }

    deinit { gpiod_chip_close(chip) }

    private func line(_ offset: UInt32, _ label: String) throws(GPIOError) -> OpaquePointer {
        guard let line = gpiod_chip_get_line(chip, offset) else {
            throw GPIOError(operation: "get \(label) line \(offset) of \(name)", code: errno)
        }
        return line
    }

    private static func flags(activeLow: Bool) -> Int32 {
        activeLow ? Int32(GPIOD_LINE_REQUEST_FLAG_ACTIVE_LOW) : 0
    }

    public func requestOutput(offset: UInt32, consumer: String, initial: Bool, activeLow: Bool, label: String)
        throws(GPIOError) -> any GPIOOutputLine {
        let line = try line(offset, label)
        guard gpiod_line_request_output_flags(line, consumer, Self.flags(activeLow: activeLow), initial ? 1 : 0) == 0 else {
            throw GPIOError(operation: "request \(label) line \(offset) of \(name) as output", code: errno)
        }
        return LibgpiodOutputLine(line: line, chip: self, description: "\(label) line \(offset) of \(name)")
    }

    public func requestInput(offset: UInt32, consumer: String, activeLow: Bool, label: String) throws(GPIOError)
        -> any GPIOInputLine {
        let line = try line(offset, label)
        guard gpiod_line_request_both_edges_events_flags(line, consumer, Self.flags(activeLow: activeLow)) == 0 else {
            throw GPIOError(operation: "request \(label) line \(offset) of \(name) for edge events", code: errno)
        }
        return LibgpiodInputLine(line: line, chip: self, description: "\(label) line \(offset) of \(name)")
    }
}

final class LibgpiodOutputLine: GPIOOutputLine {
    private let line: OpaquePointer
    private let chip: LibgpiodChip  // the chip must outlive its lines
    private let label: String

    init(line: OpaquePointer, chip: LibgpiodChip, description: String) {
        self.line = line
        self.chip = chip
        label = description
    }

    deinit { gpiod_line_release(line) }

    func set(_ on: Bool) throws(GPIOError) {
        guard gpiod_line_set_value(line, on ? 1 : 0) == 0 else {
            throw GPIOError(operation: "set \(label)", code: errno)
        }
    }
}

final class LibgpiodInputLine: GPIOInputLine {
    private let line: OpaquePointer
    private let chip: LibgpiodChip
    private let label: String

    init(line: OpaquePointer, chip: LibgpiodChip, description: String) {
        self.line = line
        self.chip = chip
        label = description
    }

    deinit { gpiod_line_release(line) }

    func read() throws(GPIOError) -> Bool {
        let value = gpiod_line_get_value(line)
        guard value >= 0 else { throw GPIOError(operation: "read \(label)", code: errno) }
        return value == 1
    }

    func waitEdge(timeout: Double) throws(GPIOError) -> GPIOEdgeEvent? {
        let seconds = max(0, timeout)
        var ts = timespec(tv_sec: Int(seconds), tv_nsec: Int((seconds - seconds.rounded(.down)) * 1e9))
        switch gpiod_line_event_wait(line, &ts) {
        case 0: return nil
        case 1:
            var event = gpiod_line_event()
            guard gpiod_line_event_read(line, &event) == 0 else {
                throw GPIOError(operation: "read edge event of \(label)", code: errno)
            }
            let t = Double(event.ts.tv_sec) + Double(event.ts.tv_nsec) / 1e9
            return GPIOEdgeEvent(rising: event.event_type == Int32(GPIOD_LINE_EVENT_RISING_EDGE), timestamp: t)
        default:
            throw GPIOError(operation: "wait for edge events of \(label)", code: errno)
        }
    }
}

// MARK: - Simulated chip

/// A chip in memory with `lineCount` lines: records every physical level written, refuses what the kernel
/// would (a line already requested, an offset past the last line), prints transitions of labelled output
/// lines to `sink` ("lamp: ON") and takes scripted input edges (`press`, `driveInput`). Thread-safe: the
/// lamp is driven from one thread, the button read from another, a test inspects from a third.
public final class SimulatedGPIOChip: GPIOChip, @unchecked Sendable {
    public let name: String
    public let lineCount: UInt32
    private let sink: (@Sendable (String) -> Void)?
    private let lock = NSCondition()
    private var _history: [UInt32: [Bool]] = [:]
    private var requested: [UInt32: (activeLow: Bool, label: String, input: Bool)] = [:]
    private var inputLevels: [UInt32: Bool] = [:]  // physical
    private var edges: [UInt32: [GPIOEdgeEvent]] = [:]  // physical edges not yet read
    private var requests: [UInt32: Int] = [:]
    private var failure: Int32?

    /// `sink` receives one line per change of a labelled output line's logical level, e.g. "lamp: ON".
    public init(name: String = "gpio-sim", lineCount: UInt32 = 8, sink: (@Sendable (String) -> Void)? = nil) {
        self.name = name
        self.lineCount = lineCount
        self.sink = sink
    }

    /// Physical levels written, per output offset, in order (the initial level first).
    public var history: [UInt32: [Bool]] { lock.withLock { _history } }

    /// The last physical level written to an output line.
    public func level(_ offset: UInt32) -> Bool? { lock.withLock { _history[offset]?.last } }

    /// Whether a line is requested now (released lines are not).
    public func isRequested(_ offset: UInt32) -> Bool { lock.withLock { requested[offset] != nil } }

    /// How many times a line has been requested since the chip was made.
    public func requestCount(_ offset: UInt32) -> Int { lock.withLock { requests[offset] ?? 0 } }

    public func requestOutput(offset: UInt32, consumer: String, initial: Bool, activeLow: Bool, label: String)
        throws(GPIOError) -> any GPIOOutputLine {
        try claim(offset, activeLow: activeLow, label: label, input: false, as: "output")
        write(offset, initial != activeLow)
        return SimulatedOutputLine(chip: self, offset: offset)
    }

    public func requestInput(offset: UInt32, consumer: String, activeLow: Bool, label: String) throws(GPIOError)
        -> any GPIOInputLine {
        try claim(offset, activeLow: activeLow, label: label, input: true, as: "input")
        return SimulatedInputLine(chip: self, offset: offset)
    }

    private func claim(_ offset: UInt32, activeLow: Bool, label: String, input: Bool, as what: String) throws(GPIOError) {
        guard offset < lineCount else { throw GPIOError(operation: "get \(label) line \(offset) of \(name)", code: EINVAL) }
        lock.lock()
        defer { lock.unlock() }
        guard requested[offset] == nil else {
            throw GPIOError(operation: "request \(label) line \(offset) of \(name) as \(what)", code: EBUSY)
        }
        requested[offset] = (activeLow, label, input)
        requests[offset, default: 0] += 1
    }

    /// Sets an input line's physical level at `time` (seconds on the line's event clock); an edge event is
    /// queued when the level changes.
    public func driveInput(_ offset: UInt32, to physical: Bool, at time: Double) {
        lock.lock()
        // An undriven line rests at its inactive level (a pull resistor on the board).
        let old = inputLevels[offset] ?? (requested[offset]?.activeLow ?? false)
        inputLevels[offset] = physical
        if old != physical {
            edges[offset, default: []].append(GPIOEdgeEvent(rising: physical, timestamp: time))
        }
        lock.broadcast()
        lock.unlock()
    }

    /// A press of a button wired to `offset` at `time`, released `duration` later: the line goes to its active
    /// level (low when requested active-low) and back.
    public func press(_ offset: UInt32, at time: Double, duration: Double = 0.08) {
        let activeLow = lock.withLock { requested[offset]?.activeLow ?? false }
        driveInput(offset, to: !activeLow, at: time)
        driveInput(offset, to: activeLow, at: time + duration)
    }

    /// From now on every write fails with `code` (a chip that went away: ENODEV).
    public func fail(with code: Int32) { lock.withLock { failure = code } }

    fileprivate func failureCode() -> Int32? { lock.withLock { failure } }

    /// Edges queued and not yet read by the line's owner.
    public func unreadEdges(_ offset: UInt32) -> Int { lock.withLock { edges[offset]?.count ?? 0 } }

    fileprivate func write(_ offset: UInt32, _ on: Bool) {
        lock.lock()
        let previous = _history[offset]?.last
        _history[offset, default: []].append(on)
        let info = requested[offset]
        lock.unlock()
        if let sink, let info, previous != on {
            sink("\(info.label): \(on != info.activeLow ? "ON" : "OFF")")
        }
    }

    fileprivate func activeLow(_ offset: UInt32) -> Bool { lock.withLock { requested[offset]?.activeLow ?? false } }

    fileprivate func readInput(_ offset: UInt32) -> Bool {
        lock.withLock { (inputLevels[offset] ?? (requested[offset]?.activeLow ?? false)) != (requested[offset]?.activeLow ?? false) }
    }

    fileprivate func nextEdge(_ offset: UInt32, timeout: Double) -> GPIOEdgeEvent? {
        let deadline = Date(timeIntervalSinceNow: max(0, timeout))
        lock.lock()
        defer { lock.unlock() }
        while edges[offset, default: []].isEmpty {
            if !lock.wait(until: deadline) { return nil }
        }
        var event = edges[offset]!.removeFirst()
        if requested[offset]?.activeLow == true { event.rising.toggle() }
        return event
    }

    fileprivate func release(_ offset: UInt32) { lock.withLock { _ = requested.removeValue(forKey: offset) } }
}

final class SimulatedOutputLine: GPIOOutputLine {
    private let chip: SimulatedGPIOChip
    private let offset: UInt32
    private let activeLow: Bool

    init(chip: SimulatedGPIOChip, offset: UInt32) {
        self.chip = chip
        self.offset = offset
        activeLow = chip.activeLow(offset)
    }

    deinit { chip.release(offset) }

    func set(_ on: Bool) throws(GPIOError) {
        if let code = chip.failureCode() { throw GPIOError(operation: "set line \(offset) of \(chip.name)", code: code) }
        chip.write(offset, on != activeLow)
    }
}

final class SimulatedInputLine: GPIOInputLine {
    private let chip: SimulatedGPIOChip
    private let offset: UInt32

    init(chip: SimulatedGPIOChip, offset: UInt32) {
        self.chip = chip
        self.offset = offset
    }

    deinit { chip.release(offset) }

    func read() throws(GPIOError) -> Bool { chip.readInput(offset) }

    func waitEdge(timeout: Double) throws(GPIOError) -> GPIOEdgeEvent? { chip.nextEdge(offset, timeout: timeout) }
}
