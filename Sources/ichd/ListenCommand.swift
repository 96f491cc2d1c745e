import ArgumentParser
import Foundation
import ICHAlerts

/// `ichd listen`: the integrators' reference reader of the serial line protocol (docs/serial-protocol.md).
struct ListenCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "listen",
        abstract: "Read the appliance's serial lines: check checksums and SEQ order, print each event.",
        discussion: """
            DEVICE is a tty (/dev/ttyUSB0, or the link a sim board's `pty:PATH` made), or pty:PATH to create a \
            pseudo-terminal here and link its far end at PATH. Invalid lines are reported with the reason and \
            reading goes on. Exit status: 0 when every line read was valid and in SEQ order, 1 otherwise.
            """)

    @Argument(help: "Serial device (tty path) or pty:PATH.")
    var device: String

    @Option(help: "Baud rate (9600 to 921600).")
    var baud = 115_200

    @Flag(help: "One JSON object per line: type, seq, valid, every key (and reason when invalid).")
    var json = false

    @Flag(help: "Acknowledge each ALERT (an ACK line with its id).")
    var ack = false

    @Option(help: "Exit after N lines.")
    var count: Int?

    @Option(help: "Exit after S seconds without a byte.")
    var timeout: Double?

    func validate() throws {
        if SerialPort.baudRates[baud] == nil {
            throw ValidationError("--baud must be one of \(SerialPort.baudRates.keys.sorted().map(String.init).joined(separator: ", "))")
        }
        if let count, count < 1 { throw ValidationError("--count must be at least 1") }
        if let timeout, !(timeout > 0) { throw ValidationError("--timeout must be positive") }
    }

    func run() throws {
        var listener = ProtocolListener(json: json, acknowledge: ack)
        let session = SerialListenSession(device: SerialDevice(device), baud: baud, count: count, timeout: timeout)
        do {
            try session.run(&listener, output: { line in
                FileHandle.standardOutput.write(Data((line + "\n").utf8))
            }, note: { printError($0) })
        } catch {
            printError(error.description)
            throw rejectedExit
        }
        if listener.invalidLines > 0 || listener.sequenceProblems > 0 {
            printError("\(listener.linesRead) lines: \(listener.invalidLines) invalid, \(listener.sequenceProblems) out of SEQ order")
            throw rejectedExit
        }
    }
}
