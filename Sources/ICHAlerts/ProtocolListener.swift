import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// SEQ order of the appliance's lines as a reader sees them: +1 a line, 1 on HELLO. The first line read may
/// have any SEQ (the reader may start mid-stream).
public struct SequenceChecker: Sendable {
    private var last: Int?

    public init() {}

    /// What is wrong with this line's SEQ, nil when it is the expected one. Call it for valid lines only.
    public mutating func check(_ line: ProtocolLine) -> String? {
        defer { last = line.seq }
        if line.lineType == .hello { return line.seq == 1 ? nil : "HELLO with SEQ \(line.seq), not 1" }
        guard let last else { return nil }
        if line.seq == last + 1 { return nil }
        if line.seq == 1 { return "SEQ restarted at 1 without HELLO" }
        if line.seq <= last { return "SEQ \(line.seq) repeats or goes back (after \(last))" }
        return "SEQ gap: expected \(last + 1), got \(line.seq)"
    }
}

/// One line as `ichd listen` reports it.
public struct ListenedLine: Sendable, Equatable {
    public var inspected: InspectedLine
    /// SEQ order problem (gap, repeat, restart without HELLO); nil when in order or the line is invalid.
    public var sequenceProblem: String?
    /// The ACK sent for it (with `--ack`, for a valid ALERT), framed.
    public var acknowledgement: String?
}

/// `ichd listen`'s logic without the device: validates each line, checks SEQ order, formats it (text or one
/// JSON object) and, with `acknowledge`, makes the ACK for each ALERT with the reader's own SEQ.
public struct ProtocolListener: Sendable {
    public var json: Bool
    public var acknowledge: Bool
    private var sequence = SequenceChecker()
    private var ackSeq = 0
    public private(set) var linesRead = 0
    public private(set) var invalidLines = 0
    public private(set) var sequenceProblems = 0

    /// JSON members this reader adds; version 1 never uses them as protocol keys.
    public static let reservedKeys: Set<String> = ["type", "seq", "valid", "reason", "seq_error", "raw"]

    public init(json: Bool = false, acknowledge: Bool = false) {
        self.json = json
        self.acknowledge = acknowledge
    }

    /// `raw`: a line without its LF (nil for a run over 512 bytes without LF).
    public mutating func receive(_ raw: [UInt8]?) -> ListenedLine {
        linesRead += 1
        let inspected = raw.map { LineDecoder.inspect($0) }
            ?? InspectedLine(raw: "", seq: nil, type: nil, fields: [], problem: "more than \(LineProtocol.maxLineLength) bytes without LF")
        var result = ListenedLine(inspected: inspected, sequenceProblem: nil, acknowledgement: nil)
        guard let line = inspected.line else {
            invalidLines += 1
            return result
        }
        result.sequenceProblem = sequence.check(line)
        if result.sequenceProblem != nil { sequenceProblems += 1 }
        if acknowledge, line.lineType == .alert, let id = line["id"] {
            ackSeq += 1
            result.acknowledgement = ProtocolLine(seq: ackSeq, type: LineType.ack.rawValue, fields: [ProtocolField("id", id)]).framed
        }
        return result
    }

    /// The line as printed: text, or one JSON object (`type`, `seq`, `valid`, every key with its decoded
    /// value as a string; `reason` and `raw` when invalid; `seq_error` for a SEQ order problem).
    public func format(_ listened: ListenedLine) -> String {
        json ? Self.json(listened) : Self.text(listened)
    }

    public static func text(_ listened: ListenedLine) -> String {
        let l = listened.inspected
        guard l.isValid, let seq = l.seq, let type = l.type else {
            return "INVALID (\(l.problem ?? "invalid")): \(l.raw)"
        }
        var text = "#\(seq) \(type)"
        for field in l.fields { text += " \(field.key)=\(LineProtocol.decodeValue(field.value))" }
        if let problem = listened.sequenceProblem { text += "  [\(problem)]" }
        return text
    }

    public static func json(_ listened: ListenedLine) -> String {
        let l = listened.inspected
        var members: [String] = []
        members.append("\"type\":" + (l.type.map(quote) ?? "null"))
        members.append("\"seq\":" + (l.seq.map(String.init) ?? "null"))
        members.append("\"valid\":\(l.isValid)")
        if let problem = l.problem {
            members.append("\"reason\":" + quote(problem))
            members.append("\"raw\":" + quote(l.raw))
        }
        if let problem = listened.sequenceProblem { members.append("\"seq_error\":" + quote(problem)) }
        for field in l.fields where !reservedKeys.contains(field.key) {
            members.append(quote(field.key) + ":" + quote(LineProtocol.decodeValue(field.value)))
        }
        return "{" + members.joined(separator: ",") + "}"
    }

    static func quote(_ s: String) -> String {
        var out = "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 { out += String(format: "\\u%04x", scalar.value) } else { out.unicodeScalars.append(scalar) }
            }
        }
        return out + "\""
    }
}

/// `ichd listen` on a device: reads lines until `count` lines were read or `timeout` seconds passed without a
/// byte, reopening the device when it goes away (the appliance restarted, the cable was pulled).
public struct SerialListenSession {
    public var device: SerialDevice
    public var baud: Int
    public var count: Int?
    public var timeout: Double?

    public init(device: SerialDevice, baud: Int, count: Int? = nil, timeout: Double? = nil) {
        self.device = device
        self.baud = baud
        self.count = count
        self.timeout = timeout
    }

    /// `output` gets each formatted line; `note` gets the reader's own remarks (ACK sent, device lost).
    /// Throws only when the device cannot be opened at all at the start.
    public func run(_ listener: inout ProtocolListener, output: (String) -> Void, note: (String) -> Void) throws(SerialError) {
        var port: SerialPort? = try SerialPort.open(device, baud: baud, rtscts: false)
        var assembler = LineAssembler()
        var lastByte = monotonicSeconds()
        var nextOpen = 0.0
        while true {
            if let count, listener.linesRead >= count { break }
            let now = monotonicSeconds()
            if let timeout, now - lastByte >= timeout { break }
            guard let current = port else {
                if now >= nextOpen {
                    port = try? SerialPort.open(device, baud: baud, rtscts: false)
                    if port != nil { note("reopened \(device)") } else { nextOpen = now + 0.5 }
                }
                if port == nil { usleep(50_000) }
                continue
            }
            var pfd = pollfd(fd: current.fd, events: Int16(POLLIN), revents: 0)
            _ = poll(&pfd, 1, 100)
            guard pfd.revents != 0 else { continue }
            var buffer: [UInt8] = []
            switch current.read(into: &buffer) {
            case .wouldBlock: continue
            case .gone(let error):
                note("lost \(device): \(error); reopening")
                current.close()
                port = nil
                assembler = LineAssembler()
                nextOpen = monotonicSeconds() + 0.5
                continue
            case .data:
                lastByte = monotonicSeconds()
            }
            for line in assembler.append(buffer) {
                let listened = listener.receive(line)
                output(listener.format(listened))
                if let ack = listened.acknowledgement {
                    Self.writeAll(Array(ack.utf8), to: current)
                    note("sent \(ack.trimmingCharacters(in: .whitespacesAndNewlines))")
                }
                if let count, listener.linesRead >= count { break }
            }
        }
        port?.close()
    }

    static func writeAll(_ bytes: [UInt8], to port: SerialPort) {
        var offset = 0
        let giveUp = monotonicSeconds() + 2
        while offset < bytes.count && monotonicSeconds() < giveUp {
            guard let n = try? port.write(bytes[offset...]) else { return }
            offset += n
            if n == 0 {
                var pfd = pollfd(fd: port.fd, events: Int16(POLLOUT), revents: 0)
                _ = poll(&pfd, 1, 100)
            }
        }
    }
}
