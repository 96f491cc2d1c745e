import Foundation
import Glibc
import ICHAlerts
import Logging

let quietLogger = Logger(label: "ichd-test") { _ in SwiftLogNoOpLogHandler() }

/// A fresh folder for pty links.
func temporaryFolder() -> String {
    let path = NSTemporaryDirectory() + "ichd-alerts-\(getpid())-\(UUID().uuidString.prefix(8))"
    try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

/// Polls `condition` every 10 ms until it holds or `seconds` pass (generous deadlines: threads are real).
@discardableResult
func eventually(_ seconds: Double = 10, _ condition: () -> Bool) -> Bool {
    let deadline = Date(timeIntervalSinceNow: seconds)
    while Date() < deadline {
        if condition() { return true }
        usleep(10_000)
    }
    return condition()
}

/// The integrator's end of a link: an fd on a tty (raw, non-blocking) read line by line.
final class LineEnd: @unchecked Sendable {
    let fd: Int32
    private var buffer: [UInt8] = []
    private var closed = false

    init(fd: Int32) {
        self.fd = fd
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
    }

    /// Opens a tty path (the link a `pty:PATH` device made) raw.
    convenience init?(path: String) {
        let fd = open(path, O_RDWR | O_NOCTTY | O_NONBLOCK)
        guard fd >= 0 else { return nil }
        var t = termios()
        tcgetattr(fd, &t)
        cfmakeraw(&t)
        tcsetattr(fd, TCSANOW, &t)
        self.init(fd: fd)
    }

    deinit { close() }

    func close() {
        if !closed { Glibc.close(fd) }
        closed = true
    }

    /// The next whole line (with CR LF stripped of LF only: the decoder wants the CR), or nil at the deadline.
    func readLine(within seconds: Double = 10) -> String? {
        let deadline = Date(timeIntervalSinceNow: seconds)
        while true {
            if let lf = buffer.firstIndex(of: 0x0A) {
                let line = Array(buffer[..<lf])
                buffer.removeFirst(lf + 1)
                return String(decoding: line, as: UTF8.self)
            }
            let left = deadline.timeIntervalSinceNow
            if left <= 0 { return nil }
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            _ = poll(&pfd, 1, Int32(min(100, left * 1000)))
            var chunk = [UInt8](repeating: 0, count: 4096)
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, 4096) }
            if n > 0 { buffer += chunk[0..<n] }
        }
    }

    /// Reads until a valid line of `type` arrives; the lines read on the way are returned before it.
    func readUntil(_ type: LineType, within seconds: Double = 10, where match: (ProtocolLine) -> Bool = { _ in true })
        -> (line: ProtocolLine?, before: [String]) {
        var before: [String] = []
        let deadline = Date(timeIntervalSinceNow: seconds)
        while deadline.timeIntervalSinceNow > 0, let raw = readLine(within: deadline.timeIntervalSinceNow) {
            if case .success(let line) = LineDecoder.decode(raw), line.lineType == type, match(line) { return (line, before) }
            before.append(raw)
        }
        return (nil, before)
    }

    /// Every line that arrives within `seconds` (until `seconds` of silence).
    func drain(quiet seconds: Double = 0.3) -> [String] {
        var lines: [String] = []
        while let line = readLine(within: seconds) { lines.append(line) }
        return lines
    }

    func send(_ text: String) {
        let bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if n > 0 { offset += n } else { usleep(1000) }
        }
    }
}

/// A pseudo-terminal made by the test: the test holds the master (the "USB adapter"), the appliance opens the
/// slave through a symlink as if it were /dev/ttyUSB0.
final class TestPty {
    let master: LineEnd
    let slavePath: String
    private let slave: Int32

    init(linkAt link: String? = nil) {
        var m: Int32 = -1, s: Int32 = -1
        precondition(openpty(&m, &s, nil, nil, nil) == 0)
        slavePath = String(cString: ttyname(s))
        var t = termios()
        tcgetattr(s, &t)
        cfmakeraw(&t)
        tcsetattr(s, TCSANOW, &t)
        master = LineEnd(fd: m)
        slave = s
        if let link {
            unlink(link + ".tmp")
            symlink(slavePath, link + ".tmp")
            rename(link + ".tmp", link)
        }
        // The appliance opens its own fd on the slave; the test's is closed so a closed master hangs it up.
        Glibc.close(s)
    }

    /// Pulls the cable: the appliance's end sees a hang-up.
    func unplug() { master.close() }
}

func sampleAlert(_ id: String = "A-20261126-0001", accession: String? = "ACC 42,7") -> AlertNotice {
    AlertNotice(id: id, raisedAt: Date(timeIntervalSince1970: 1_795_727_648.123), studyUID: "1.2.826.0.1.3680043.8.498.1",
                seriesUID: "1.2.826.0.1.3680043.8.498.1.2", slice: 17,
                probabilities: ClassProbabilities(values: [0.912, 0.004, 0.031, 0.012, 0.087, 0.874]), latencyMs: 412,
                accession: accession)
}

func sampleResult(alert: String? = "A-20261126-0001") -> SeriesResultNotice {
    SeriesResultNotice(studyUID: "1.2.826.0.1.3680043.8.498.1", seriesUID: "1.2.826.0.1.3680043.8.498.1.2",
                       positive: alert != nil, scored: 32, skipped: 2, rejected: 0,
                       maxima: ClassProbabilities(values: [0.951, 0.010, 0.044, 0.020, 0.120, 0.930]), alertID: alert)
}

let sampleIdentity = ApplianceIdentity(firmware: "0.4.0", modelID: "rsna-r18-int8", modelSHA: "3f9c2a71be04",
                                       board: "sim", bootID: "9b1e4c7d2a6f0e35")

/// Thread-safe recorder for callbacks and sinks.
final class Recorder<T: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [T] = []
    func append(_ item: T) { lock.withLock { items.append(item) } }
    var all: [T] { lock.withLock { items } }
    var count: Int { lock.withLock { items.count } }
}

/// A settable pipeline status.
final class StatusBox: @unchecked Sendable {
    private let lock = NSLock()
    private var value = PipelineStatus(state: .ok, queue: 0, p99Ms: nil)
    var status: PipelineStatus {
        get { lock.withLock { value } }
        set { lock.withLock { value = newValue } }
    }
}
