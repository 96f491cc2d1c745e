/// `[serial]` of the daemon's config.
public struct SerialSettings: Sendable, Equatable {
    /// A tty path (`/dev/ttyUSB0`), or `pty:PATH`: a pseudo-terminal whose far end is linked at PATH (the sim
    /// board; PATH already resolved by the caller).
    public var device: String
    /// 9600...921600.
    public var baud: Int
    /// Hardware flow control (RTS/CTS).
    public var rtscts: Bool
    /// `heartbeat_s`: seconds between HB lines.
    public var heartbeatSeconds: Double
    /// `resend_s`: seconds between resends of an unacknowledged ALERT.
    public var resendSeconds: Double
    /// `send_accession`: put `acc=` on ALERT lines.
    public var sendAccession: Bool
    /// Seconds between attempts to reopen a device that went away.
    public var reopenSeconds: Double

    public init(device: String, baud: Int = 115_200, rtscts: Bool = false, heartbeatSeconds: Double = 10,
                resendSeconds: Double = 30, sendAccession: Bool = false, reopenSeconds: Double = 1) {
        self.device = device
        self.baud = baud
        self.rtscts = rtscts
        self.heartbeatSeconds = heartbeatSeconds
        self.resendSeconds = resendSeconds
        self.sendAccession = sendAccession
        self.reopenSeconds = reopenSeconds
    }
}

/// `[lamp]` of the daemon's config (the board's GPIO lines).
public struct LampSettings: Sendable, Equatable {
    /// "sim" (a simulated chip printing on the console) or "gpiod" (libgpiod v1.6).
    public var backend: String
    /// What gpiod_chip_open_lookup accepts: name, path, label or number.
    public var chip: String
    public var alertLine: UInt32
    public var readyLine: UInt32?
    public var buzzerLine: UInt32?
    public var buttonLine: UInt32?
    /// Every line of the lamp board is active-low (lamps sunk by a transistor, button to ground).
    public var activeLow: Bool
    /// `button_debounce_ms`: edges within this time of an accepted press are bounce.
    public var buttonDebounceMs: Int
    /// Seconds without `scoringLoopAlive()` after which the ready lamp stops pulsing.
    public var readyStaleSeconds: Double

    public init(backend: String = "sim", chip: String = "gpiochip0", alertLine: UInt32 = 17, readyLine: UInt32? = nil,
                buzzerLine: UInt32? = nil, buttonLine: UInt32? = nil, activeLow: Bool = false, buttonDebounceMs: Int = 50,
                readyStaleSeconds: Double = 5) {
        self.backend = backend
        self.chip = chip
        self.alertLine = alertLine
        self.readyLine = readyLine
        self.buzzerLine = buzzerLine
        self.buttonLine = buttonLine
        self.activeLow = activeLow
        self.buttonDebounceMs = buttonDebounceMs
        self.readyStaleSeconds = readyStaleSeconds
    }
}

/// What HELLO says about the appliance.
public struct ApplianceIdentity: Sendable, Equatable {
    public var firmware: String
    public var modelID: String
    /// First 12 hex digits (lowercase) of the model file's SHA-256.
    public var modelSHA: String
    public var board: String
    /// Random per start.
    public var bootID: String

    public init(firmware: String, modelID: String, modelSHA: String, board: String, bootID: String) {
        self.firmware = firmware
        self.modelID = modelID
        self.modelSHA = modelSHA
        self.board = board
        self.bootID = bootID
    }

    /// A fresh random boot id (16 hex digits).
    public static func randomBootID() -> String {
        (0..<8).map { _ in LineProtocol.hex(UInt8.random(in: 0...255)) }.joined().lowercased()
    }
}
