import CGPIOD
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
/// line's level after release, so the owner drives it off before letting go.
public protocol GPIOOutputLine: AnyObject {
    func set(_ on: Bool) throws(GPIOError)
}

/// A GPIO chip as the alert layer sees it. The real board uses `LibgpiodChip`; tests and the simulated board
/// use `SimulatedGPIOChip` behind the same protocol.
public protocol GPIOChip: AnyObject {
    var name: String { get }
    func requestOutput(offset: UInt32, consumer: String, initial: Bool) throws(GPIOError) -> any GPIOOutputLine
}

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

    public func requestOutput(offset: UInt32, consumer: String, initial: Bool) throws(GPIOError) -> any GPIOOutputLine {
        guard let line = gpiod_chip_get_line(chip, offset) else {
            throw GPIOError(operation: "get line \(offset) of \(name)", code: errno)
        }
        guard gpiod_line_request_output(line, consumer, initial ? 1 : 0) == 0 else {
            throw GPIOError(operation: "request line \(offset) of \(name) as output", code: errno)
        }
        return LibgpiodOutputLine(line: line, chip: self, description: "line \(offset) of \(name)")
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

/// A chip in memory with `lineCount` lines: records every level written, refuses what the kernel would
/// (a line already requested, an offset past the last line).
public final class SimulatedGPIOChip: GPIOChip {
    public let name: String
    public let lineCount: UInt32
    /// Levels written, per offset, in order (the initial level first).
    public private(set) var history: [UInt32: [Bool]] = [:]
    private var requested: Set<UInt32> = []

    public init(name: String = "gpio-sim", lineCount: UInt32 = 8) {
        self.name = name
        self.lineCount = lineCount
    }

    public func level(_ offset: UInt32) -> Bool? { history[offset]?.last }

    public func requestOutput(offset: UInt32, consumer: String, initial: Bool) throws(GPIOError) -> any GPIOOutputLine {
        guard offset < lineCount else { throw GPIOError(operation: "get line \(offset) of \(name)", code: EINVAL) }
        guard !requested.contains(offset) else {
            throw GPIOError(operation: "request line \(offset) of \(name) as output", code: EBUSY)
        }
        requested.insert(offset)
        history[offset, default: []].append(initial)
        return SimulatedOutputLine(chip: self, offset: offset)
    }

    fileprivate func write(_ offset: UInt32, _ on: Bool) { history[offset, default: []].append(on) }
    fileprivate func release(_ offset: UInt32) { requested.remove(offset) }
}

final class SimulatedOutputLine: GPIOOutputLine {
    private let chip: SimulatedGPIOChip
    private let offset: UInt32

    init(chip: SimulatedGPIOChip, offset: UInt32) {
        self.chip = chip
        self.offset = offset
    }

    deinit { chip.release(offset) }

    func set(_ on: Bool) throws(GPIOError) { chip.write(offset, on) }
}
