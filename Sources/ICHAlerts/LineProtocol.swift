import Foundation
#if canImport(Glibc)
import Glibc
#endif

// Serial line protocol, version 1 (docs/serial-protocol.md): `$` BODY `*` HH CR LF, HH the XOR of BODY's
// bytes in two uppercase hex digits, at most 512 bytes a line; BODY = `ICH1,SEQ,TYPE[,key=value]...`.

/// The grammar's constants and the value codings every line type shares.
public enum LineProtocol {
    /// First field of every body; a reader refuses any other.
    public static let version = "ICH1"
    /// A whole line, `$` to LF inclusive.
    public static let maxLineLength = 512
    /// Longest value the encoder emits (after percent-encoding), `msg` excepted; a DICOM UID is at most 64.
    public static let maxValueLength = 64
    /// Longest `msg` value the encoder emits.
    public static let maxMessageLength = 160

    /// XOR of every byte of BODY (NMEA 0183).
    public static func checksum<S: Sequence>(_ body: S) -> UInt8 where S.Element == UInt8 {
        body.reduce(0, ^)
    }

    static let hexDigits = Array("0123456789ABCDEF".utf8)

    static func hex(_ byte: UInt8) -> String {
        String(decoding: [hexDigits[Int(byte >> 4)], hexDigits[Int(byte & 15)]], as: UTF8.self)
    }

    /// `$BODY*HH\r\n`.
    public static func frame(body: String) -> String {
        "$" + body + "*" + hex(checksum(body.utf8)) + "\r\n"
    }

    /// `[a-z][a-z0-9_]*`.
    public static func isKey<S: StringProtocol>(_ key: S) -> Bool {
        guard let first = key.utf8.first, first >= 0x61 && first <= 0x7A else { return false }
        return key.utf8.allSatisfy { ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x5F }
    }

    /// A byte a value may hold as is: printable ASCII without `,` `*` `$` `=` or space.
    static func isValueByte(_ b: UInt8) -> Bool {
        b > 0x20 && b < 0x7F && b != 0x2C && b != 0x2A && b != 0x24 && b != 0x3D
    }

    /// Non-empty, printable ASCII without `,` `*` `$` `=` or space.
    public static func isValue<S: StringProtocol>(_ value: S) -> Bool {
        !value.isEmpty && value.utf8.allSatisfy(isValueByte)
    }

    /// A free value (UID, accession, identity, message) made safe for the grammar: every byte a value may
    /// not hold, and `%` itself, becomes `%HH` (UTF-8 bytes, uppercase hex); an empty value becomes `-`;
    /// the result is cut to `limit` bytes (never inside a `%HH`). Values that are already clean, such as
    /// DICOM UIDs, pass unchanged.
    public static func encodeValue(_ raw: String, limit: Int = maxValueLength) -> String {
        if raw.isEmpty { return "-" }
        var out: [UInt8] = []
        for b in raw.utf8 {
            let escaped: [UInt8] = isValueByte(b) && b != 0x25 ? [b] : [0x25, hexDigits[Int(b >> 4)], hexDigits[Int(b & 15)]]
            if out.count + escaped.count > limit { break }
            out += escaped
        }
        return out.isEmpty ? "-" : String(decoding: out, as: UTF8.self)
    }

    /// Inverse of `encodeValue` (a malformed `%` sequence is kept as is).
    public static func decodeValue(_ wire: String) -> String {
        guard wire.utf8.contains(0x25) else { return wire }
        let bytes = Array(wire.utf8)
        var out: [UInt8] = []
        var i = 0
        while i < bytes.count {
            if bytes[i] == 0x25, i + 2 < bytes.count,
               let hi = hexValue(bytes[i + 1]), let lo = hexValue(bytes[i + 2]) {
                out.append(hi << 4 | lo)
                i += 3
            } else {
                out.append(bytes[i])
                i += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    static func hexValue(_ b: UInt8) -> UInt8? {
        switch b {
        case 0x30...0x39: return b - 0x30
        case 0x41...0x46: return b - 0x41 + 10
        default: return nil
        }
    }

    /// UTC ISO 8601 with milliseconds: `2026-11-26T21:14:08.123Z` (rounded to the nearest millisecond).
    public static func timestamp(_ date: Date) -> String {
        let ms = Int64((date.timeIntervalSince1970 * 1000).rounded())
        var seconds = time_t(ms >= 0 ? ms / 1000 : (ms - 999) / 1000)
        let millis = Int(ms - Int64(seconds) * 1000)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        return String(format: "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", Int(parts.tm_year) + 1900, Int(parts.tm_mon) + 1,
                      Int(parts.tm_mday), Int(parts.tm_hour), Int(parts.tm_min), Int(parts.tm_sec), millis)
    }

    /// Three decimals, clamped to 0...1; `-` for a class the model lacks (nil) or a NaN.
    public static func probability(_ p: Double?) -> String {
        guard let p, !p.isNaN else { return "-" }
        return String(format: "%.3f", min(1, max(0, p)))
    }

    /// An out-of-distribution score: two decimals, `0.00` up, at most `999.99` (a value beyond that is as far
    /// out as it matters); 1.00 and above means out of distribution.
    public static func oodScore(_ x: Double) -> String {
        guard !x.isNaN else { return "-" }
        return String(format: "%.2f", min(999.99, max(0, x)))
    }

    /// Digits, a point, two digits (`0.41`, `12.07`), no leading zeros before the point but one.
    static func isScore(_ s: String) -> Bool {
        let parts = s.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 2, parts[1].utf8.count == 2, parts[1].utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
              isCount(String(parts[0])) else { return false }
        return true
    }

    static func isTimestamp(_ s: String) -> Bool {
        let b = Array(s.utf8)
        guard b.count == 24 else { return false }
        let pattern = Array("dddd-dd-ddTdd:dd:dd.dddZ".utf8)
        for (c, p) in zip(b, pattern) {
            if p == UInt8(ascii: "d") { guard c >= 0x30 && c <= 0x39 else { return false } } else if c != p { return false }
        }
        return true
    }

    static func isProbability(_ s: String) -> Bool {
        let b = Array(s.utf8)
        guard b.count == 5, b[1] == UInt8(ascii: "."), b[0] == 0x30 || b[0] == 0x31,
              b[2...].allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return false }
        return b[0] == 0x30 || s == "1.000"
    }

    static func isCount(_ s: String) -> Bool {
        !s.isEmpty && s.utf8.count <= 18 && s.utf8.allSatisfy { $0 >= 0x30 && $0 <= 0x39 }
            && (s == "0" || s.utf8.first != 0x30)
    }
}

/// One `key=value` of a body, the value as it is on the wire (see `LineProtocol.decodeValue`).
public struct ProtocolField: Sendable, Equatable {
    public var key: String
    public var value: String

    public init(_ key: String, _ value: String) {
        self.key = key
        self.value = value
    }
}

/// The line types of version 1. Appliance to integrator: HELLO, HB, ALERT, RESULT, FAULT, CLEAR;
/// integrator to appliance: ACK, STATUS, TEST.
public enum LineType: String, Sendable, CaseIterable {
    case hello = "HELLO", heartbeat = "HB", alert = "ALERT", result = "RESULT", fault = "FAULT", clear = "CLEAR"
    case ack = "ACK", status = "STATUS", test = "TEST"

    public var fromAppliance: Bool {
        switch self {
        case .hello, .heartbeat, .alert, .result, .fault, .clear: true
        case .ack, .status, .test: false
        }
    }
}

/// A parsed body: SEQ, TYPE and the fields in line order.
public struct ProtocolLine: Sendable, Equatable {
    public var seq: Int
    public var type: String
    public var fields: [ProtocolField]

    public init(seq: Int, type: String, fields: [ProtocolField] = []) {
        self.seq = seq
        self.type = type
        self.fields = fields
    }

    public var lineType: LineType? { LineType(rawValue: type) }

    /// The wire value of `key`, nil when absent.
    public subscript(key: String) -> String? { fields.first { $0.key == key }?.value }

    /// `ICH1,SEQ,TYPE,key=value,...`
    public var body: String {
        ([LineProtocol.version, String(seq), type] + fields.map { "\($0.key)=\($0.value)" }).joined(separator: ",")
    }

    /// The whole line, `$` to CR LF.
    public var framed: String { LineProtocol.frame(body: body) }
}

/// What a reader makes of one received line: as much as could be read, and why it is invalid if it is.
public struct InspectedLine: Sendable, Equatable {
    /// The received bytes without the CR LF, non-printable bytes shown as `\xHH`.
    public var raw: String
    public var seq: Int?
    public var type: String?
    public var fields: [ProtocolField]
    /// Why the line is invalid; nil for a valid line.
    public var problem: String?

    public var isValid: Bool { problem == nil }

    /// The parsed line when valid.
    public var line: ProtocolLine? {
        guard problem == nil, let seq, let type else { return nil }
        return ProtocolLine(seq: seq, type: type, fields: fields)
    }
}

/// Reads and validates received lines: framing, checksum, grammar, then each known type's keys and values.
public enum LineDecoder {
    /// What each key of a known type holds. Keys not listed are allowed (a v1 reader ignores keys it does not
    /// know); listed keys are required unless optional.
    enum ValueKind {
        case text, count, countOrNone, probability, time, hex12, classKey
        case oneOf([String])
        case textOrNone
        /// `-` or a non-negative decimal with two decimals (`ood`).
        case scoreOrNone
    }

    static let classFields: [(String, ValueKind, Bool)] = ClassProbabilities.keys.map { ($0, .probability, false) }

    /// (key, kind, optional) per type.
    static let schema: [LineType: [(String, ValueKind, Bool)]] = [
        .hello: [("fw", .text, false), ("model", .text, false), ("model_sha", .hex12, false), ("board", .text, false),
                 ("boot", .text, false)],
        .heartbeat: [("state", .oneOf(HealthState.allCases.map(\.rawValue)), false), ("queue", .count, false),
                     ("p99_ms", .countOrNone, false), ("lamp", .oneOf(["OFF", "ON", "BLINK"]), false),
                     ("pending", .count, false), ("bad_in", .count, false),
                     ("p50_ms", .countOrNone, true), ("p95_ms", .countOrNone, true), ("over", .count, true)],
        .alert: [("id", .text, false), ("t", .time, false), ("study", .text, false), ("series", .text, false),
                 ("slice", .countOrNone, false)] + classFields
            + [("top", .classKey, false), ("lat_ms", .count, false), ("acc", .text, true)],
        .result: [("study", .text, false), ("series", .text, false), ("result", .oneOf(["POS", "NEG"]), false),
                  ("scored", .count, false), ("skipped", .count, false), ("rejected", .count, false)] + classFields
            + [("alert", .textOrNone, false), ("ood", .scoreOrNone, true)],
        .fault: [("code", .oneOf(FaultCode.allCases.map(\.rawValue)), false), ("msg", .text, false)],
        .clear: [("id", .text, false), ("by", .oneOf(AcknowledgeSource.allCases.map(\.rawValue)), false)],
        .ack: [("id", .text, false)],
        .status: [],
        .test: [],
    ]

    /// `line`: the received bytes up to, not including, the LF (so ending in CR).
    public static func inspect<C: Collection>(_ line: C) -> InspectedLine where C.Element == UInt8 {
        let bytes = Array(line)
        var result = InspectedLine(raw: printable(bytes.last == 0x0D ? Array(bytes.dropLast()) : bytes), seq: nil, type: nil,
                                   fields: [], problem: nil)
        func fail(_ reason: String) -> InspectedLine {
            if result.problem == nil { result.problem = reason }
            return result
        }
        guard bytes.count + 1 <= LineProtocol.maxLineLength else {
            return fail("line of \(bytes.count + 1) bytes, longer than \(LineProtocol.maxLineLength)")
        }
        var content = bytes[...]
        if content.last == 0x0D { content = content.dropLast() } else { result.problem = "no CR before LF" }
        guard content.first == UInt8(ascii: "$") else { return fail("does not start with $") }
        guard let star = content.lastIndex(of: UInt8(ascii: "*")) else { return fail("no *HH checksum") }
        let body = content[content.index(after: content.startIndex)..<star]
        let tail = content[content.index(after: star)...]
        if let bad = content.first(where: { $0 < 0x20 || $0 > 0x7E }) {
            result.problem = result.problem ?? "non-printable byte 0x\(LineProtocol.hex(bad))"
        }
        if tail.count != 2 {
            result.problem = result.problem ?? "checksum must be two hex digits after *"
        } else if let hi = LineProtocol.hexValue(tail[tail.startIndex]), let lo = LineProtocol.hexValue(tail[tail.index(after: tail.startIndex)]) {
            let expected = LineProtocol.checksum(body)
            if hi << 4 | lo != expected {
                result.problem = result.problem
                    ?? "bad checksum: line says \(String(decoding: tail, as: UTF8.self)), body gives \(LineProtocol.hex(expected))"
            }
        } else {
            result.problem = result.problem ?? "checksum is not two uppercase hex digits"
        }
        // The body is read even when framing failed, so a reader can show what arrived.
        let parts = body.split(separator: UInt8(ascii: ","), omittingEmptySubsequences: false).map { String(decoding: $0, as: UTF8.self) }
        guard parts.count >= 3 else { return fail("body needs ICH1,SEQ,TYPE") }
        if let seq = Int(parts[1]), LineProtocol.isCount(parts[1]) { result.seq = seq }
        result.type = parts[2]
        var seen = Set<String>()
        for part in parts.dropFirst(3) {
            guard let eq = part.firstIndex(of: "=") else {
                result.problem = result.problem ?? "field \"\(part)\" is not key=value"
                continue
            }
            let key = String(part[..<eq]), value = String(part[part.index(after: eq)...])
            if !LineProtocol.isKey(key) { result.problem = result.problem ?? "bad key \"\(key)\"" }
            if !LineProtocol.isValue(value) { result.problem = result.problem ?? "bad value for \(key)" }
            if !seen.insert(key).inserted { result.problem = result.problem ?? "key \(key) repeated" }
            result.fields.append(ProtocolField(key, value))
        }
        guard parts[0] == LineProtocol.version else { return fail("version \"\(parts[0])\", not \(LineProtocol.version)") }
        guard result.seq != nil else { return fail("SEQ \"\(parts[1])\" is not a decimal number") }
        guard let type = LineType(rawValue: parts[2]) else { return fail("unknown type \"\(parts[2])\"") }
        if result.problem == nil, let problem = validate(type: type, fields: result.fields) { result.problem = problem }
        return result
    }

    public static func inspect(_ line: String) -> InspectedLine {
        var bytes = Array(line.utf8)
        if bytes.last == 0x0A { bytes.removeLast() }
        return inspect(bytes)
    }

    /// The line, or why it is invalid.
    public static func decode<C: Collection>(_ line: C) -> Result<ProtocolLine, LineProblem> where C.Element == UInt8 {
        let inspected = inspect(line)
        if let line = inspected.line { return .success(line) }
        return .failure(LineProblem(reason: inspected.problem ?? "invalid"))
    }

    public static func decode(_ line: String) -> Result<ProtocolLine, LineProblem> {
        var bytes = Array(line.utf8)
        if bytes.last == 0x0A { bytes.removeLast() }
        return decode(bytes)
    }

    /// The keys and values a known type requires; nil when they are all there and well formed.
    static func validate(type: LineType, fields: [ProtocolField]) -> String? {
        guard let spec = schema[type] else { return nil }
        for (key, kind, optional) in spec {
            guard let value = fields.first(where: { $0.key == key })?.value else {
                if optional { continue }
                return "\(type.rawValue) without \(key)"
            }
            let ok: Bool
            switch kind {
            case .text: ok = true
            case .textOrNone: ok = true
            case .count: ok = LineProtocol.isCount(value)
            case .countOrNone: ok = value == "-" || LineProtocol.isCount(value)
            case .probability: ok = value == "-" || LineProtocol.isProbability(value)
            case .time: ok = LineProtocol.isTimestamp(value)
            case .hex12: ok = value.utf8.count == 12 && value.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }
            case .classKey: ok = ClassProbabilities.keys.contains(value)
            case .scoreOrNone: ok = value == "-" || LineProtocol.isScore(value)
            case .oneOf(let allowed): ok = allowed.contains(value)
            }
            if !ok { return "\(type.rawValue) \(key)=\(value) is not a valid value" }
        }
        return nil
    }

    static func printable(_ bytes: [UInt8]) -> String {
        var out = ""
        for b in bytes {
            if b >= 0x20 && b < 0x7F { out.unicodeScalars.append(Unicode.Scalar(b)) } else { out += "\\x" + LineProtocol.hex(b) }
        }
        return out
    }
}

/// Why a received line is invalid.
public struct LineProblem: Error, Equatable, CustomStringConvertible {
    public var reason: String
    public init(reason: String) { self.reason = reason }
    public var description: String { reason }
}

/// Splits a byte stream into lines at LF. A run of more than 512 bytes without LF is cut and reported as
/// one over-long line (then the reader resynchronises at the next LF).
public struct LineAssembler: Sendable {
    private var buffer: [UInt8] = []
    private var overflowing = false

    public init() {}

    /// Complete lines (without the LF) found after appending `bytes`; `nil` entries stand for over-long lines.
    public mutating func append<C: Collection>(_ bytes: C) -> [[UInt8]?] where C.Element == UInt8 {
        var lines: [[UInt8]?] = []
        for b in bytes {
            if b == 0x0A {
                lines.append(overflowing ? nil : buffer)
                buffer.removeAll(keepingCapacity: true)
                overflowing = false
            } else if !overflowing {
                buffer.append(b)
                if buffer.count >= LineProtocol.maxLineLength {
                    overflowing = true
                    buffer.removeAll(keepingCapacity: true)
                }
            }
        }
        return lines
    }
}
