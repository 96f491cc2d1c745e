import Foundation
import Logging
#if canImport(Glibc)
import Glibc
#endif

/// Monotonic seconds (CLOCK_MONOTONIC) for the I/O side, which times real devices.
func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// The serial voice of the appliance: one I/O thread owns the port, numbers lines as it writes them and reads
/// the integrator's lines. Callers only enqueue (`send`), which never blocks on the port.
///
/// Back-pressure: at most one HB waits in the queue (a newer one is dropped, and none is queued while the
/// port is closed); an ALERT already waiting for the same id is not queued twice; a FAULT identical to one
/// waiting is not queued twice; every other RESULT, FAULT, CLEAR waits, in order, however long the port
/// stays blocked (they are bounded by the work the appliance does, a few hundred bytes each).
///
/// Reconnect: when the device goes away (EIO, ENXIO, ENOENT, hang-up) the port is closed, `connection(false)`
/// reported and an open retried every `reopenSeconds`. On every open the first line is HELLO with SEQ 1, then
/// every alert `reannounce()` returns, then what was waiting.
public final class SerialAlertLink: @unchecked Sendable {
    public struct Callbacks: Sendable {
        /// The current HB fields, read as the HB is written.
        public var heartbeat: @Sendable () -> HeartbeatFields
        /// The alerts to announce after HELLO (the pending ones).
        public var reannounce: @Sendable () -> [AlertNotice]
        /// A valid ACK, STATUS or TEST from the integrator (on the I/O thread).
        public var command: @Sendable (IntegratorCommand) -> Void
        /// The port opened (true) or went away (false, with the reason).
        public var connection: @Sendable (_ open: Bool, _ reason: String) -> Void

        public init(heartbeat: @escaping @Sendable () -> HeartbeatFields,
                    reannounce: @escaping @Sendable () -> [AlertNotice],
                    command: @escaping @Sendable (IntegratorCommand) -> Void,
                    connection: @escaping @Sendable (_ open: Bool, _ reason: String) -> Void) {
            self.heartbeat = heartbeat
            self.reannounce = reannounce
            self.command = command
            self.connection = connection
        }
    }

    enum Item {
        case message(ApplianceMessage)
        /// Rendered from `callbacks.heartbeat()` when written.
        case heartbeat

        var isHeartbeat: Bool { if case .heartbeat = self { true } else { false } }
        var alertID: String? { if case .message(.alert(let a, _)) = self { a.id } else { nil } }
    }

    public let settings: SerialSettings
    public let device: SerialDevice
    private let identity: ApplianceIdentity
    private let logger: Logger
    private let callbacks: Callbacks

    private let lock = NSCondition()
    private var queue: [Item] = []
    private var queueHead = 0
    private var running = false
    private var threadDone = true
    private var flushDeadline: Double?
    private var _open = false
    private var _badInbound = 0
    private var _droppedHeartbeats = 0
    private var _linesWritten = 0
    private var _opens = 0
    private var _lastError: String?
    private var wakeRead: Int32 = -1
    private var wakeWrite: Int32 = -1

    public init(settings: SerialSettings, identity: ApplianceIdentity, logger: Logger, callbacks: Callbacks) {
        self.settings = settings
        device = SerialDevice(settings.device)
        self.identity = identity
        self.logger = logger
        self.callbacks = callbacks
        var fds: [Int32] = [-1, -1]
        if pipe(&fds) == 0 {
            for fd in fds {
                _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
                _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            }
            wakeRead = fds[0]
            wakeWrite = fds[1]
        }
    }

    deinit {
        if wakeRead >= 0 { close(wakeRead) }
        if wakeWrite >= 0 { close(wakeWrite) }
    }

    // MARK: - Caller side (any thread, never blocks on the port)

    /// Starts the I/O thread; it opens the port (HELLO first) or reports it missing and retries.
    public func start() {
        lock.lock()
        guard !running else { lock.unlock(); return }
        running = true
        threadDone = false
        lock.unlock()
        let thread = Thread { [self] in ioLoop() }
        thread.name = "ichd-serial"
        thread.start()
    }

    /// Queues a line (see the back-pressure rules above).
    public func send(_ message: ApplianceMessage) {
        lock.lock()
        switch message {
        case .alert(let alert, _):
            if pendingItems.contains(where: { $0.alertID == alert.id }) { lock.unlock(); return }
        case .fault:
            if pendingItems.contains(where: { if case .message(let m) = $0 { m == message } else { false } }) {
                lock.unlock()
                return
            }
        case .heartbeat:
            lock.unlock()
            return sendHeartbeat()
        default: break
        }
        queue.append(.message(message))
        lock.unlock()
        wake()
    }

    /// Queues an HB unless one is waiting or the port is closed; `urgent` (a STATUS answer) puts it first.
    public func sendHeartbeat(urgent: Bool = false) {
        lock.lock()
        if !_open || pendingItems.contains(where: \.isHeartbeat) {
            _droppedHeartbeats += 1
            lock.unlock()
            return
        }
        if urgent { queue.insert(.heartbeat, at: queueHead) } else { queue.append(.heartbeat) }
        lock.unlock()
        wake()
    }

    /// Writes what is queued for at most `flushSeconds`, then closes the port and ends the I/O thread.
    public func stop(flushSeconds: Double = 1) {
        lock.lock()
        guard running else { lock.unlock(); return }
        flushDeadline = monotonicSeconds() + flushSeconds
        lock.unlock()
        wake()
        lock.lock()
        let giveUp = Date(timeIntervalSinceNow: flushSeconds + 2)
        while !threadDone { if !lock.wait(until: giveUp) { break } }
        running = false
        lock.unlock()
    }

    public var isOpen: Bool { lock.withLock { _open } }
    /// Received lines that were not a valid ACK, STATUS or TEST (`bad_in`).
    public var badInbound: Int { lock.withLock { _badInbound } }
    /// Lines waiting to be written.
    public var queuedCount: Int { lock.withLock { queue.count - queueHead } }
    public var droppedHeartbeats: Int { lock.withLock { _droppedHeartbeats } }
    public var linesWritten: Int { lock.withLock { _linesWritten } }
    /// Times the port was opened (the first open included).
    public var opens: Int { lock.withLock { _opens } }
    public var lastError: String? { lock.withLock { _lastError } }

    private var pendingItems: ArraySlice<Item> { queue[queueHead...] }

    private func wake() {
        var byte: UInt8 = 1
        _ = Glibc.write(wakeWrite, &byte, 1)
    }

    private func drainWake() {
        var buffer = [UInt8](repeating: 0, count: 64)
        while buffer.withUnsafeMutableBytes({ Glibc.read(wakeRead, $0.baseAddress, 64) }) > 0 {}
    }

    // MARK: - I/O thread

    private func popItem() -> Item? {
        lock.lock()
        defer { lock.unlock() }
        guard queueHead < queue.count else { return nil }
        let item = queue[queueHead]
        queueHead += 1
        if queueHead > 256 && queueHead * 2 > queue.count {
            queue.removeFirst(queueHead)
            queueHead = 0
        }
        return item
    }

    private func pushFront(_ item: Item) {
        lock.withLock { if queueHead > 0 { queueHead -= 1; queue[queueHead] = item } else { queue.insert(item, at: 0) } }
    }

    private func ioLoop() {
        var port: SerialPort?
        var seq = 0
        var out: [UInt8] = []
        var outOffset = 0
        var inFlight: Item?
        var assembler = LineAssembler()
        var nextOpen = 0.0
        var reportedMissing = false

        func render(_ item: Item) -> [UInt8] {
            seq += 1
            let message: ApplianceMessage = switch item {
            case .message(let m): m
            case .heartbeat: .heartbeat(callbacks.heartbeat())
            }
            return Array(message.line(seq: seq).framed.utf8)
        }

        func lose(_ error: SerialError) {
            port?.close()
            port = nil
            // A line cut short is sent again after HELLO, except what HELLO and the re-announce stand for.
            if let item = inFlight {
                switch item {
                case .heartbeat, .message(.hello), .message(.alert): break
                default: pushFront(item)
                }
            }
            inFlight = nil
            out = []
            outOffset = 0
            assembler = LineAssembler()
            lock.withLock {
                _open = false
                _lastError = error.description
                // Heartbeats describe a moment; none waits for a closed port.
                let kept = queue[queueHead...].filter { !$0.isHeartbeat }
                queue = Array(kept)
                queueHead = 0
            }
            logger.warning("serial device lost", metadata: ["device": "\(device)", "error": "\(error)"])
            callbacks.connection(false, error.description)
            nextOpen = monotonicSeconds() + settings.reopenSeconds
            reportedMissing = true
        }

        func tryOpen() {
            do {
                let opened = try SerialPort.open(device, baud: settings.baud, rtscts: settings.rtscts)
                port = opened
                seq = 0
                let alerts = callbacks.reannounce()
                let ids = Set(alerts.map(\.id))
                lock.withLock {
                    _open = true
                    _opens += 1
                    let rest = queue[queueHead...].filter { $0.alertID.map { !ids.contains($0) } ?? true }
                    queue = alerts.map { .message(.alert($0, sendAccession: settings.sendAccession)) } + rest
                    queueHead = 0
                }
                inFlight = .message(.hello(identity))
                out = render(inFlight!)
                outOffset = 0
                reportedMissing = false
                logger.info("serial port open", metadata: ["device": "\(device)", "tty": "\(opened.ttyPath)"])
                callbacks.connection(true, "opened \(opened.ttyPath)")
            } catch {
                nextOpen = monotonicSeconds() + settings.reopenSeconds
                lock.withLock { _lastError = error.description }
                if !reportedMissing {
                    reportedMissing = true
                    logger.warning("serial device unavailable", metadata: ["device": "\(device)", "error": "\(error)"])
                    callbacks.connection(false, error.description)
                }
            }
        }

        func handleInbound(_ line: [UInt8]?) {
            guard let line else { lock.withLock { _badInbound += 1 }; return }
            if line.isEmpty || line == [0x0D] { return }
            let inspected = LineDecoder.inspect(line)
            guard let parsed = inspected.line, let command = IntegratorCommand(parsed) else {
                lock.withLock { _badInbound += 1 }
                logger.debug("ignored inbound line", metadata: ["reason": "\(inspected.problem ?? "not an integrator line")"])
                return
            }
            callbacks.command(command)
        }

        while true {
            let (stopAt, isRunning) = lock.withLock { (flushDeadline, running) }
            let now = monotonicSeconds()
            if !isRunning { break }
            if let stopAt {
                let idle = out.count == outOffset && queuedCount == 0
                if port == nil || now >= stopAt { break }
                if idle {
                    // Closing a pty hangs its far end up and discards what the reader has not read yet: give
                    // the reader the rest of the flush time to take it.
                    while let port, port.unsentBytes() > 0, monotonicSeconds() < stopAt { usleep(10_000) }
                    break
                }
            }
            guard let current = port else {
                if now >= nextOpen { tryOpen() }
                if port == nil {
                    var pfd = pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0)
                    _ = poll(&pfd, 1, Int32(max(10, min(200, (nextOpen - now) * 1000))))
                    drainWake()
                }
                continue
            }
            if outOffset == out.count, let item = popItem() {
                inFlight = item
                out = render(item)
                outOffset = 0
            }
            let wantWrite = outOffset < out.count
            var fds = [pollfd(fd: current.fd, events: Int16(POLLIN) | (wantWrite ? Int16(POLLOUT) : 0), revents: 0),
                       pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0)]
            let ready = poll(&fds, 2, 200)
            if ready < 0 && errno != EINTR { lose(SerialError(operation: "poll", code: errno)); continue }
            if fds[1].revents != 0 { drainWake() }
            let revents = fds[0].revents
            if revents & Int16(POLLIN) != 0 {
                var buffer: [UInt8] = []
                switch current.read(into: &buffer) {
                case .data:
                    for line in assembler.append(buffer) { handleInbound(line) }
                case .wouldBlock: break
                case .gone(let error): lose(error); continue
                }
            }
            if revents & Int16(POLLHUP | POLLERR | POLLNVAL) != 0 && revents & Int16(POLLIN) == 0 {
                lose(SerialError(operation: "poll \(current.ttyPath) (hang-up)", code: EIO))
                continue
            }
            if wantWrite && revents & Int16(POLLOUT) != 0 {
                do {
                    let n = try current.write(out[outOffset...])
                    outOffset += n
                    if outOffset == out.count {
                        inFlight = nil
                        lock.withLock { _linesWritten += 1 }
                    }
                } catch {
                    lose(error)
                }
            }
        }
        port?.close()
        lock.withLock {
            _open = false
            threadDone = true
            lock.broadcast()
        }
    }
}
