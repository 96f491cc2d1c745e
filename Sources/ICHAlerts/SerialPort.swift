import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Where the serial link goes: a tty opened as is, or a pseudo-terminal the appliance creates (the sim board).
public enum SerialDevice: Sendable, Equatable, CustomStringConvertible {
    /// `/dev/ttyUSB0`, `/dev/serial0`, or any path (a symlink too) to a tty.
    case tty(String)
    /// `pty:PATH`: openpty, the far (slave) end linked at PATH.
    case pseudoTerminal(link: String)

    public init(_ spec: String) {
        if spec.hasPrefix("pty:") { self = .pseudoTerminal(link: String(spec.dropFirst(4))) } else { self = .tty(spec) }
    }

    public var description: String {
        switch self {
        case .tty(let path): path
        case .pseudoTerminal(let link): "pty:\(link)"
        }
    }
}

/// A serial port operation that failed, with errno.
public struct SerialError: Error, Equatable, CustomStringConvertible {
    public let operation: String
    public let code: Int32

    public init(operation: String, code: Int32) {
        self.operation = operation
        self.code = code
    }

    public var description: String { "\(operation): \(String(cString: strerror(code))) (errno \(code))" }

    /// errnos that mean the device went away (USB serial unplugged, the far side of a pty closed).
    public var deviceGone: Bool { [EIO, ENXIO, ENOENT, ENODEV, EBADF].contains(code) }
}

/// An open serial port: raw 8N1, non-blocking `fd` for `poll`. For `pty:PATH` the far end stays open here
/// too, so the master never reads EIO while no reader has the link open, and lines wait in the tty's buffer
/// for the first reader.
public final class SerialPort: @unchecked Sendable {
    /// The descriptor to read, write and poll (the master, for a pseudo-terminal).
    public let fd: Int32
    public let device: SerialDevice
    /// The tty's own path: the path given, or the pseudo-terminal's far end (`/dev/pts/N`).
    public let ttyPath: String
    private var farEnd: Int32 = -1
    private var closed = false

    /// Supported speeds: termios has constants for these only.
    public static let baudRates: [Int: speed_t] = [
        9600: speed_t(B9600), 19200: speed_t(B19200), 38400: speed_t(B38400), 57600: speed_t(B57600),
        115_200: speed_t(B115200), 230_400: speed_t(B230400), 460_800: speed_t(B460800), 500_000: speed_t(B500000),
        576_000: speed_t(B576000), 921_600: speed_t(B921600),
    ]

    private init(fd: Int32, device: SerialDevice, ttyPath: String, farEnd: Int32) {
        self.fd = fd
        self.device = device
        self.ttyPath = ttyPath
        self.farEnd = farEnd
    }

    deinit { close() }

    public static func open(_ device: SerialDevice, baud: Int, rtscts: Bool) throws(SerialError) -> SerialPort {
        guard let speed = baudRates[baud] else {
            throw SerialError(operation: "baud \(baud) (supported: \(baudRates.keys.sorted().map(String.init).joined(separator: ", ")))", code: EINVAL)
        }
        switch device {
        case .tty(let path):
            let fd = Glibc.open(path, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC)
            guard fd >= 0 else { throw SerialError(operation: "open \(path)", code: errno) }
            do throws(SerialError) {
                try configure(fd, speed: speed, rtscts: rtscts, what: path)
            } catch {
                Glibc.close(fd)
                throw error
            }
            return SerialPort(fd: fd, device: device, ttyPath: path, farEnd: -1)
        case .pseudoTerminal(let link):
            var master: Int32 = -1, slave: Int32 = -1
            guard openpty(&master, &slave, nil, nil, nil) == 0 else { throw SerialError(operation: "openpty", code: errno) }
            let name = ttyname(slave).map { String(cString: $0) } ?? ""
            do throws(SerialError) {
                for fd in [master, slave] { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
                guard fcntl(master, F_SETFL, fcntl(master, F_GETFL) | O_NONBLOCK) == 0 else {
                    throw SerialError(operation: "make pty master non-blocking", code: errno)
                }
                // Raw on the far end above all turns echo off: with echo the master would read back its own lines.
                try configure(slave, speed: speed, rtscts: false, what: name)
                try replaceSymlink(at: link, pointingTo: name)
            } catch {
                Glibc.close(master)
                Glibc.close(slave)
                throw error
            }
            return SerialPort(fd: master, device: device, ttyPath: name, farEnd: slave)
        }
    }

    /// termios raw 8N1 (`cfmakeraw`), receiver on, modem lines ignored unless RTS/CTS, VMIN = VTIME = 0.
    static func configure(_ fd: Int32, speed: speed_t, rtscts: Bool, what: String) throws(SerialError) {
        var t = termios()
        guard tcgetattr(fd, &t) == 0 else { throw SerialError(operation: "tcgetattr \(what)", code: errno) }
        cfmakeraw(&t)
        t.c_cflag &= ~tcflag_t(PARENB | CSTOPB | CSIZE)
        t.c_cflag |= tcflag_t(CS8 | CLOCAL | CREAD)
        if rtscts { t.c_cflag |= tcflag_t(CRTSCTS) } else { t.c_cflag &= ~tcflag_t(CRTSCTS) }
        withUnsafeMutableBytes(of: &t.c_cc) { cc in
            cc[Int(VMIN)] = 0
            cc[Int(VTIME)] = 0
        }
        guard cfsetispeed(&t, speed) == 0, cfsetospeed(&t, speed) == 0 else {
            throw SerialError(operation: "set speed of \(what)", code: errno)
        }
        guard tcsetattr(fd, TCSANOW, &t) == 0 else { throw SerialError(operation: "tcsetattr \(what)", code: errno) }
    }

    /// A symlink at `link` to `target`, replacing whatever was there in one rename (a reader never sees the
    /// path missing, nor a stale link from an earlier run).
    static func replaceSymlink(at link: String, pointingTo target: String) throws(SerialError) {
        let temporary = "\(link).\(getpid()).tmp"
        unlink(temporary)
        guard symlink(target, temporary) == 0 else { throw SerialError(operation: "symlink \(temporary) -> \(target)", code: errno) }
        guard rename(temporary, link) == 0 else {
            let code = errno
            unlink(temporary)
            throw SerialError(operation: "rename \(temporary) to \(link)", code: code)
        }
    }

    public enum ReadOutcome: Equatable {
        case data(Int)
        case wouldBlock
        case gone(SerialError)
    }

    /// Reads what is there without blocking (appended to `buffer`).
    public func read(into buffer: inout [UInt8], max: Int = 4096) -> ReadOutcome {
        var chunk = [UInt8](repeating: 0, count: max)
        let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, max) }
        if n > 0 {
            buffer += chunk[0..<n]
            return .data(n)
        }
        if n == 0 { return .gone(SerialError(operation: "read \(ttyPath)", code: EIO)) }  // a hung-up tty reads EOF
        if errno == EAGAIN || errno == EINTR { return .wouldBlock }
        return .gone(SerialError(operation: "read \(ttyPath)", code: errno))
    }

    /// Writes what the port takes now; the count written (0 when it would block).
    public func write(_ bytes: ArraySlice<UInt8>) throws(SerialError) -> Int {
        let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        if n >= 0 { return n }
        if errno == EAGAIN || errno == EINTR { return 0 }
        throw SerialError(operation: "write \(ttyPath)", code: errno)
    }

    /// Bytes written and not yet taken by the far side: for a pseudo-terminal what waits unread in the far
    /// end's input (FIONREAD on the end kept open here), for a tty what waits in the output queue (TIOCOUTQ).
    public func unsentBytes() -> Int {
        var count: Int32 = 0
        let ok = farEnd >= 0 ? ioctl(farEnd, UInt(FIONREAD), &count) : ioctl(fd, UInt(TIOCOUTQ), &count)
        return ok == 0 ? Int(count) : 0
    }

    /// Closes the port; for a pseudo-terminal also the far end, and the link if it still points at it.
    public func close() {
        guard !closed else { return }
        closed = true
        Glibc.close(fd)
        if farEnd >= 0 { Glibc.close(farEnd) }
        if case .pseudoTerminal(let link) = device,
           let target = try? FileManager.default.destinationOfSymbolicLink(atPath: link), target == ttyPath {
            unlink(link)
        }
    }
}
