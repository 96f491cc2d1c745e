import Foundation
import ICHAlerts
import TOMLKit

/// A configuration value the daemon refuses at start: which key, what it held, why. `ichd run` prints it and
/// exits with status 2.
public struct ConfigError: Error, CustomStringConvertible, Equatable {
    public let key: String
    public let value: String
    public let reason: String

    public init(key: String, value: String, reason: String) {
        self.key = key
        self.value = value
        self.reason = reason
    }

    public var description: String {
        key.isEmpty ? "config: \(reason)" : "config: \(key) = \(value): \(reason)"
    }
}

/// `ichd.toml` (board/*/ichd.toml; docs/daemon.md lists every key). Key names are an interface installers
/// script against. Relative paths resolve against the config file's folder.
public struct DaemonConfig: Sendable, Equatable {
    public enum WatchMode: String, Sendable { case auto, inotify, poll }

    public var board = "sim"
    // [folders]
    public var dropFolder: String
    public var archiveFolder: String
    public var quarantineFolder: String
    public var stateFolder: String
    /// 0: archived files are kept for ever (nothing is deleted to make room).
    public var retentionDays = 0
    public var watch = WatchMode.auto
    /// Poll interval of the stable-size fallback (and the rescan that backs inotify up).
    public var pollIntervalMs = 1000
    // [model]
    public var modelPath: String
    public var threads = 1
    /// Engines scoring side by side (each with `threads` workers); slices of a backlog go to whichever is free.
    public var scorers = 1
    // [budget]
    public var sliceBudgetMs = 1000
    // [decision]
    public var adjacentSlices = 2
    public var seriesQuietSeconds = 10.0
    // [serial]; nil device = no serial line (`device = ""`)
    public var serial: SerialSettings?
    // [lamp]
    public var lamp: LampSettings
    // [receiver]
    public var aeTitle = "ICHD"
    public var receiverPort = 11112
    // [console]
    public var console = ConsoleSettings()
    /// The file the configuration came from (for SIGHUP reloads).
    public var sourcePath: String

    /// Every key the daemon knows, by table ("" = top level). Anything else is refused: a typo must not
    /// silently fall back to a default on a box in a hospital.
    static let knownKeys: [String: Set<String>] = [
        "": ["board", "folders", "model", "budget", "decision", "serial", "lamp", "receiver", "console"],
        "folders": ["drop", "archive", "quarantine", "state", "retention_days", "watch", "poll_ms"],
        "model": ["path", "threads", "scorers"],
        "budget": ["slice_ms"],
        "decision": ["adjacent_slices", "series_quiet_s"],
        "serial": ["device", "baud", "rtscts", "heartbeat_s", "resend_s", "send_accession"],
        "lamp": ["backend", "chip", "alert_line", "ready_line", "button_line", "buzzer_line", "active_low", "button_debounce_ms"],
        "receiver": ["ae_title", "port"],
        "console": ["enabled", "bind", "port", "token_file", "max_upload_mb", "show_identifiers"],
    ]

    public static let baudRates: Set<Int> = [9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600]

    /// Parses and validates; creates missing folders (a folder that cannot be created is an error).
    public static func load(path: String) throws(ConfigError) -> DaemonConfig {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw ConfigError(key: "", value: "", reason: "cannot read \(path): \(error.localizedDescription)")
        }
        let base = (URL(fileURLWithPath: path).standardizedFileURL.deletingLastPathComponent()).path
        return try parse(text, baseFolder: base, sourcePath: path)
    }

    public static func parse(_ text: String, baseFolder: String, sourcePath: String = "") throws(ConfigError) -> DaemonConfig {
        let root: TOMLTable
        do {
            root = try TOMLTable(string: text)
        } catch let error as TOMLParseError {
            throw ConfigError(key: "", value: "", reason: "not valid TOML (\(error.source.begin.debugDescription)): \(error.description)")
        } catch {
            throw ConfigError(key: "", value: "", reason: "not valid TOML: \(error)")
        }
        let r = Reader(root: root, base: baseFolder)
        try r.checkKeys()

        var c = DaemonConfig(dropFolder: try r.path("folders", "drop", default: "drop"),
                             archiveFolder: try r.path("folders", "archive", default: "archive"),
                             quarantineFolder: try r.path("folders", "quarantine", default: "quarantine"),
                             stateFolder: try r.path("folders", "state", default: "state"),
                             modelPath: try r.path("model", "path", default: nil),
                             lamp: LampSettings(backend: "sim", chip: "gpiochip0", alertLine: 17, readyLine: nil, buzzerLine: nil,
                                                buttonLine: nil, activeLow: false, buttonDebounceMs: 50),
                             sourcePath: sourcePath)
        c.board = try r.string("", "board", default: "sim") { v in
            v.isEmpty || !v.allSatisfy(Self.isProtocolSafe) ? "a board name of letters, digits, '-' or '_'" : nil
        }
        c.retentionDays = try r.int("folders", "retention_days", default: 0, range: 0...36500)
        let watch = try r.string("folders", "watch", default: "auto") { WatchMode(rawValue: $0) == nil ? "one of auto, inotify, poll" : nil }
        c.watch = WatchMode(rawValue: watch)!
        c.pollIntervalMs = try r.int("folders", "poll_ms", default: 1000, range: 50...60000)
        c.threads = try r.int("model", "threads", default: 1, range: 1...64)
        c.scorers = try r.int("model", "scorers", default: 1, range: 1...16)
        c.sliceBudgetMs = try r.int("budget", "slice_ms", default: 1000, range: 1...600_000)
        c.adjacentSlices = try r.int("decision", "adjacent_slices", default: 2, range: 1...64)
        c.seriesQuietSeconds = try r.double("decision", "series_quiet_s", default: 10, range: 0.1...86400)

        let device = try r.rawString("serial", "device", default: "")
        if !device.isEmpty {
            var resolved = device
            if device.hasPrefix("pty:") {
                let link = String(device.dropFirst(4))
                guard !link.isEmpty else { throw ConfigError(key: "serial.device", value: "\"\(device)\"", reason: "pty: needs a link path") }
                resolved = "pty:" + Reader.resolve(link, base: baseFolder)
            } else {
                resolved = Reader.resolve(device, base: baseFolder)
            }
            let baud = try r.int("serial", "baud", default: 115200, range: 1...4_000_000)
            guard baudRates.contains(baud) else {
                throw ConfigError(key: "serial.baud", value: "\(baud)", reason: "one of \(baudRates.sorted().map(String.init).joined(separator: ", "))")
            }
            c.serial = SerialSettings(device: resolved, baud: baud, rtscts: try r.bool("serial", "rtscts", default: false),
                                      heartbeatSeconds: try r.double("serial", "heartbeat_s", default: 10, range: 0.1...3600),
                                      resendSeconds: try r.double("serial", "resend_s", default: 30, range: 0.1...86400),
                                      sendAccession: try r.bool("serial", "send_accession", default: false))
        }

        let backend = try r.string("lamp", "backend", default: "sim") { ["sim", "gpiod"].contains($0) ? nil : "one of sim, gpiod" }
        c.lamp = LampSettings(
            backend: backend, chip: try r.string("lamp", "chip", default: "gpiochip0") { $0.isEmpty ? "a chip name, path, label or number" : nil },
            alertLine: UInt32(try r.int("lamp", "alert_line", default: 17, range: 0...65535)),
            readyLine: try r.optionalInt("lamp", "ready_line", range: 0...65535).map(UInt32.init),
            buzzerLine: try r.optionalInt("lamp", "buzzer_line", range: 0...65535).map(UInt32.init),
            buttonLine: try r.optionalInt("lamp", "button_line", range: 0...65535).map(UInt32.init),
            activeLow: try r.bool("lamp", "active_low", default: false),
            buttonDebounceMs: try r.int("lamp", "button_debounce_ms", default: 50, range: 0...10_000))
        let lines = [("alert_line", Optional(c.lamp.alertLine)), ("ready_line", c.lamp.readyLine),
                     ("buzzer_line", c.lamp.buzzerLine), ("button_line", c.lamp.buttonLine)].compactMap { k, v in v.map { (k, $0) } }
        for (i, a) in lines.enumerated() {
            for b in lines[(i + 1)...] where a.1 == b.1 {
                throw ConfigError(key: "lamp.\(b.0)", value: "\(b.1)", reason: "the same line as lamp.\(a.0)")
            }
        }

        c.aeTitle = try r.string("receiver", "ae_title", default: "ICHD") { v in
            (1...16).contains(v.utf8.count) && v.allSatisfy({ $0.isASCII && !$0.isNewline && $0 != "\\" }) ? nil : "1 to 16 ASCII characters, no backslash"
        }
        c.receiverPort = try r.int("receiver", "port", default: 11112, range: 1...65535)

        c.console.enabled = try r.bool("console", "enabled", default: false)
        c.console.bind = try r.string("console", "bind", default: "127.0.0.1") { $0.isEmpty ? "an address to listen on, e.g. 127.0.0.1" : nil }
        c.console.port = try r.int("console", "port", default: 8080, range: 0...65535)  // 0: any free port (logged)
        let tokenFile = try r.rawString("console", "token_file", default: "")
        c.console.tokenFile = tokenFile.isEmpty ? nil : Reader.resolve(tokenFile, base: baseFolder)
        c.console.maxUploadMB = try r.int("console", "max_upload_mb", default: 64, range: 1...4096)
        c.console.showIdentifiers = try r.bool("console", "show_identifiers", default: false)
        if c.console.enabled {
            do {
                _ = try c.console.accessToken()
            } catch {
                throw ConfigError(key: error.key.isEmpty ? "console" : "console.\(error.key)", value: error.value, reason: error.reason)
            }
        }

        // Folders: created when missing; a path that exists as a file, or cannot be created, is refused.
        for (key, folder) in [("folders.drop", c.dropFolder), ("folders.archive", c.archiveFolder),
                              ("folders.quarantine", c.quarantineFolder), ("folders.state", c.stateFolder)] {
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: folder, isDirectory: &isDirectory) {
                guard isDirectory.boolValue else { throw ConfigError(key: key, value: "\"\(folder)\"", reason: "exists and is not a folder") }
            } else {
                do {
                    try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
                } catch {
                    throw ConfigError(key: key, value: "\"\(folder)\"", reason: "cannot create the folder: \(error.localizedDescription)")
                }
            }
            guard access(folder, W_OK) == 0 else { throw ConfigError(key: key, value: "\"\(folder)\"", reason: "not writable") }
        }
        let drop = URL(fileURLWithPath: c.dropFolder).standardizedFileURL.path
        for (key, folder) in [("folders.archive", c.archiveFolder), ("folders.quarantine", c.quarantineFolder), ("folders.state", c.stateFolder)] {
            let f = URL(fileURLWithPath: folder).standardizedFileURL.path
            if f == drop || f.hasPrefix(drop + "/") {
                throw ConfigError(key: key, value: "\"\(folder)\"", reason: "inside the drop folder (it would be watched and scored again)")
            }
        }
        guard FileManager.default.isReadableFile(atPath: c.modelPath) else {
            throw ConfigError(key: "model.path", value: "\"\(c.modelPath)\"", reason: "no readable file there")
        }
        return c
    }

    /// Characters allowed in protocol values (docs/serial-protocol.md): printable ASCII without , * $ = space.
    static func isProtocolSafe(_ ch: Character) -> Bool {
        guard let a = ch.asciiValue, a > 32, a < 127 else { return false }
        return !",*$=".contains(ch)
    }

    /// Typed, keyed access that names the key and value in every refusal.
    struct Reader {
        let root: TOMLTable
        let base: String

        static func resolve(_ path: String, base: String) -> String {
            path.hasPrefix("/") ? path : URL(fileURLWithPath: base).appendingPathComponent(path).standardizedFileURL.path
        }

        func checkKeys() throws(ConfigError) {
            for key in root.keys where !(knownKeys[""]!.contains(key)) {
                throw ConfigError(key: key, value: describe(root[key]), reason: "unknown key")
            }
            for (table, keys) in knownKeys where !table.isEmpty {
                guard let value = root[table] else { continue }
                guard let t = value.table else {
                    throw ConfigError(key: table, value: describe(value), reason: "must be a table ([\(table)])")
                }
                for key in t.keys where !keys.contains(key) {
                    throw ConfigError(key: "\(table).\(key)", value: describe(t[key]), reason: "unknown key (known: \(keys.sorted().joined(separator: ", ")))")
                }
            }
        }

        func value(_ table: String, _ key: String) -> TOMLValueConvertible? {
            table.isEmpty ? (knownKeys.keys.contains(key) ? nil : root[key])
                          : root[table]?.table?[key]
        }

        func name(_ table: String, _ key: String) -> String { table.isEmpty ? key : "\(table).\(key)" }

        func describe(_ v: TOMLValueConvertible?) -> String {
            guard let v else { return "(missing)" }
            if let s = v.string { return "\"\(s)\"" }
            return "\(v)"
        }

        func wrongType(_ table: String, _ key: String, _ v: TOMLValueConvertible, _ expected: String) -> ConfigError {
            ConfigError(key: name(table, key), value: describe(v), reason: "must be \(expected), not a \(v.type)")
        }

        func rawString(_ table: String, _ key: String, default d: String?) throws(ConfigError) -> String {
            guard let v = value(table, key) else {
                guard let d else { throw ConfigError(key: name(table, key), value: "(missing)", reason: "required") }
                return d
            }
            guard let s = v.string else { throw wrongType(table, key, v, "a string") }
            return s
        }

        func string(_ table: String, _ key: String, default d: String, check: (String) -> String?) throws(ConfigError) -> String {
            let s = try rawString(table, key, default: d)
            if let why = check(s) { throw ConfigError(key: name(table, key), value: "\"\(s)\"", reason: why) }
            return s
        }

        func path(_ table: String, _ key: String, default d: String?) throws(ConfigError) -> String {
            let s = try rawString(table, key, default: d)
            guard !s.isEmpty else { throw ConfigError(key: name(table, key), value: "\"\"", reason: "an empty path") }
            return Self.resolve(s, base: base)
        }

        func optionalInt(_ table: String, _ key: String, range: ClosedRange<Int>) throws(ConfigError) -> Int? {
            guard let v = value(table, key) else { return nil }
            guard v.type == .int, let i = v.int else { throw wrongType(table, key, v, "an integer") }
            guard range.contains(i) else {
                throw ConfigError(key: name(table, key), value: "\(i)", reason: "out of range \(range.lowerBound)...\(range.upperBound)")
            }
            return i
        }

        func int(_ table: String, _ key: String, default d: Int, range: ClosedRange<Int>) throws(ConfigError) -> Int {
            try optionalInt(table, key, range: range) ?? d
        }

        func double(_ table: String, _ key: String, default d: Double, range: ClosedRange<Double>) throws(ConfigError) -> Double {
            guard let v = value(table, key) else { return d }
            let x: Double
            if v.type == .int, let i = v.int { x = Double(i) } else if v.type == .double, let f = v.double { x = f } else {
                throw wrongType(table, key, v, "a number")
            }
            guard x.isFinite, range.contains(x) else {
                throw ConfigError(key: name(table, key), value: "\(x)", reason: "out of range \(range.lowerBound)...\(range.upperBound)")
            }
            return x
        }

        func bool(_ table: String, _ key: String, default d: Bool) throws(ConfigError) -> Bool {
            guard let v = value(table, key) else { return d }
            guard v.type == .bool, let b = v.bool else { throw wrongType(table, key, v, "true or false") }
            return b
        }
    }
}

/// `[console]`: the local web console (issue 19; docs/console.md). `ichd serve` takes the same values as flags.
public struct ConsoleSettings: Sendable, Equatable {
    public var enabled = false
    /// 127.0.0.1 by default: only the box itself. Any other address needs `token_file`.
    public var bind = "127.0.0.1"
    public var port = 8080
    public var tokenFile: String?
    public var maxUploadMB = 64
    /// Show the files' identifying values (UIDs, accession number) on the console; hidden by default.
    public var showIdentifiers = false

    public init(enabled: Bool = false, bind: String = "127.0.0.1", port: Int = 8080, tokenFile: String? = nil,
                maxUploadMB: Int = 64, showIdentifiers: Bool = false) {
        self.enabled = enabled
        self.bind = bind
        self.port = port
        self.tokenFile = tokenFile
        self.maxUploadMB = maxUploadMB
        self.showIdentifiers = showIdentifiers
    }

    /// Addresses that only this machine can reach.
    public var isLoopback: Bool { ["127.0.0.1", "::1", "localhost"].contains(bind) || bind.hasPrefix("127.") }

    /// Shortest token accepted: a guessable token on a hospital network is worse than none on loopback.
    public static let minimumTokenLength = 16

    /// The access token (nil: none needed on loopback). Refuses a non-loopback address without a token, and a
    /// token file that is unreadable, readable by others, or holds a short token. The error's key is relative
    /// to `[console]` ("token_file", "bind").
    public func accessToken() throws(ConfigError) -> String? {
        guard let tokenFile else {
            if isLoopback { return nil }
            throw ConfigError(key: "bind", value: "\"\(bind)\"", reason: "an address other than loopback needs token_file (an access token)")
        }
        guard let text = try? String(contentsOfFile: tokenFile, encoding: .utf8) else {
            throw ConfigError(key: "token_file", value: "\"\(tokenFile)\"", reason: "cannot read the token file")
        }
        var info = stat()
        if stat(tokenFile, &info) == 0, info.st_mode & 0o077 != 0 {
            throw ConfigError(key: "token_file", value: "\"\(tokenFile)\"", reason: "readable by other users (chmod 600 it)")
        }
        let token = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard token.count >= Self.minimumTokenLength, token.allSatisfy({ $0.isASCII && !$0.isWhitespace }) else {
            throw ConfigError(key: "token_file", value: "\"\(tokenFile)\"",
                              reason: "the token must be at least \(Self.minimumTokenLength) printable ASCII characters without spaces")
        }
        return token
    }
}
