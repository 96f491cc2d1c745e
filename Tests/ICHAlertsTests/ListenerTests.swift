import Foundation
import Glibc
import ICHAlerts
import Testing

@Suite struct ListenerTests {
    static func framed(_ message: ApplianceMessage, _ seq: Int) -> [UInt8] {
        Array(message.line(seq: seq).framed.utf8.dropLast())  // without LF, as the assembler gives it
    }

    @Test func sequenceOrderGapsRepeatsAndRestarts() {
        var checker = SequenceChecker()
        let line = { (seq: Int, type: String) in ProtocolLine(seq: seq, type: type) }
        #expect(checker.check(line(41, "HB")) == nil)  // the first line may have any SEQ
        #expect(checker.check(line(42, "HB")) == nil)
        #expect(checker.check(line(45, "HB")) == "SEQ gap: expected 43, got 45")
        #expect(checker.check(line(45, "HB"))?.contains("repeats") == true)
        #expect(checker.check(line(1, "HELLO")) == nil)
        #expect(checker.check(line(2, "ALERT")) == nil)
        #expect(checker.check(line(1, "HB")) == "SEQ restarted at 1 without HELLO")
        #expect(checker.check(line(3, "HELLO")) == "HELLO with SEQ 3, not 1")
    }

    @Test func jsonHasTypeSeqValidAndEveryKeyDecoded() {
        var listener = ProtocolListener(json: true)
        let out = listener.receive(Self.framed(.alert(sampleAlert("A-1", accession: "ACC 42"), sendAccession: true), 1))
        let text = listener.format(out)
        let object = try! JSONSerialization.jsonObject(with: Data(text.utf8)) as! [String: Any]
        #expect(object["type"] as? String == "ALERT")
        #expect(object["seq"] as? Int == 1)
        #expect(object["valid"] as? Bool == true)
        #expect(object["id"] as? String == "A-1")
        #expect(object["acc"] as? String == "ACC 42")
        #expect(object["sdh"] as? String == "0.874")
        #expect(object["reason"] == nil)
        #expect(text.hasPrefix("{\"type\":\"ALERT\",\"seq\":1,\"valid\":true,\"id\":\"A-1\""))
        #expect(!text.contains("\n"))
    }

    @Test func aBadLineIsReportedWithItsReasonAndReadingGoesOn() {
        var listener = ProtocolListener(json: true)
        _ = listener.receive(Self.framed(.hello(sampleIdentity), 1))
        var bad = Self.framed(.clear(id: "A-1", by: .web), 2)
        bad[bad.count - 2] = bad[bad.count - 2] == UInt8(ascii: "0") ? UInt8(ascii: "1") : UInt8(ascii: "0")
        let invalid = listener.receive(bad)
        let object = try! JSONSerialization.jsonObject(with: Data(listener.format(invalid).utf8)) as! [String: Any]
        #expect(object["valid"] as? Bool == false)
        #expect((object["reason"] as? String)?.hasPrefix("bad checksum") == true)
        #expect(object["type"] as? String == "CLEAR")
        #expect(object["id"] as? String == "A-1")
        // The corrupted line 2 is missing from the order: line 3 shows the gap.
        let next = listener.receive(Self.framed(.heartbeat(HeartbeatFields(pipeline: PipelineStatus(state: .ok, queue: 0, p99Ms: nil), lamp: .off, pending: 0, badInbound: 0)), 3))
        #expect(next.inspected.isValid)
        #expect(next.sequenceProblem == "SEQ gap: expected 2, got 3")
        #expect(ProtocolListener.text(next).hasSuffix("[SEQ gap: expected 2, got 3]"))
        let overlong = listener.receive(nil)
        #expect(!overlong.inspected.isValid)
        #expect(ProtocolListener.text(overlong).hasPrefix("INVALID (more than 512 bytes"))
        #expect(listener.linesRead == 4 && listener.invalidLines == 2 && listener.sequenceProblems == 1)
    }

    @Test func textShowsDecodedValues() {
        var listener = ProtocolListener()
        let out = listener.receive(Self.framed(.fault(.disk, "journal: disk full"), 1))
        #expect(listener.format(out) == "#1 FAULT code=DISK msg=journal: disk full")
    }

    @Test func ackAnswersEachAlertWithItsOwnSeq() throws {
        var listener = ProtocolListener(acknowledge: true)
        #expect(listener.receive(Self.framed(.hello(sampleIdentity), 1)).acknowledgement == nil)
        let first = try #require(listener.receive(Self.framed(.alert(sampleAlert("A-1"), sendAccession: false), 2)).acknowledgement)
        let second = try #require(listener.receive(Self.framed(.alert(sampleAlert("A-2"), sendAccession: false), 3)).acknowledgement)
        #expect(first == IntegratorCommand.acknowledge(id: "A-1").line(seq: 1).framed)
        #expect(second == IntegratorCommand.acknowledge(id: "A-2").line(seq: 2).framed)
        #expect(LineDecoder.inspect(first).isValid)
    }

    /// `ichd listen --ack` against the real alert layer over a pty: the ALERT it reads is acknowledged and the
    /// CLEAR comes back to it.
    @Test func aListenSessionAcknowledgesTheCentersAlert() throws {
        let folder = temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let link = folder + "/ttyICH0"
        let acks = Recorder<String>()
        let center = AlertCenter(identity: sampleIdentity,
                                 serial: SerialSettings(device: "pty:\(link)", heartbeatSeconds: 1000, resendSeconds: 1000),
                                 lamp: LampSettings(), chip: SimulatedGPIOChip(lineCount: 32), logger: quietLogger,
                                 status: { PipelineStatus(state: .ok, queue: 0, p99Ms: nil) },
                                 onAcknowledge: { id, by in acks.append("\(id) \(by.rawValue)") }, clock: ManualClock())
        center.start(pending: [sampleAlert("A-60")])
        defer { center.stop() }
        #expect(eventually { FileManager.default.fileExists(atPath: link) })
        var listener = ProtocolListener(json: true, acknowledge: true)
        var printed: [String] = [], notes: [String] = []
        try SerialListenSession(device: .tty(link), baud: 115_200, count: 3, timeout: 10)
            .run(&listener, output: { printed.append($0) }, note: { notes.append($0) })
        try #require(printed.count == 3)
        #expect(printed[0].contains("\"type\":\"HELLO\""))
        #expect(printed[1].contains("\"type\":\"ALERT\"") && printed[1].contains("\"id\":\"A-60\""))
        #expect(printed[2].contains("\"type\":\"CLEAR\"") && printed[2].contains("\"by\":\"serial\""))
        #expect(notes.contains { $0.contains("ACK,id=A-60") })
        #expect(acks.all == ["A-60 serial"])
        #expect(listener.invalidLines == 0 && listener.sequenceProblems == 0)
        #expect(center.pending.isEmpty)
    }

    @Test func aListenSessionEndsAfterTimeoutSecondsOfSilence() throws {
        let pty = TestPty()
        var listener = ProtocolListener()
        let start = Date()
        try SerialListenSession(device: .tty(pty.slavePath), baud: 9600, timeout: 0.3).run(&listener, output: { _ in }, note: { _ in })
        #expect(Date().timeIntervalSince(start) >= 0.3)
        #expect(listener.linesRead == 0)
        _ = pty
    }

    @Test func unsupportedBaudIsRefused() {
        #expect(throws: SerialError.self) { _ = try SerialPort.open(.tty("/dev/null"), baud: 1234, rtscts: false) }
        #expect(throws: SerialError.self) { _ = try SerialPort.open(.tty("/nonexistent/tty"), baud: 9600, rtscts: false) }
        // Not a tty: tcgetattr refuses it.
        #expect(throws: SerialError.self) { _ = try SerialPort.open(.tty("/dev/null"), baud: 9600, rtscts: false) }
    }

    @Test func ptyDeviceLinksItsFarEndAndReplacesAStaleLink() throws {
        let folder = temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let link = folder + "/tty"
        symlink("/dev/pts/nonexistent", link)
        let port = try SerialPort.open(SerialDevice("pty:\(link)"), baud: 921_600, rtscts: true)
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: link) == port.ttyPath)
        #expect(port.ttyPath.hasPrefix("/dev/pts/"))
        port.close()
        #expect((try? FileManager.default.destinationOfSymbolicLink(atPath: link)) == nil)
    }
}
