import Foundation
import Glibc
import ICHAlerts
import Testing

/// The alert layer end to end over real pseudo-terminals: the center owns a `pty:PATH` (or opens a tty the
/// test made), the test reads and writes the far end like an integrator.
@Suite(.serialized) struct AlertCenterTests {
    final class Fixture {
        let folder = temporaryFolder()
        let clock = ManualClock(start: 500)
        let chip: SimulatedGPIOChip
        let console = Recorder<String>()
        let acks = Recorder<String>()
        let statusBox = StatusBox()
        let center: AlertCenter
        let link: String
        static let lamp = LampSettings(backend: "sim", chip: "sim", alertLine: 1, readyLine: 2, buzzerLine: nil, buttonLine: 4,
                                       activeLow: false, buttonDebounceMs: 50)

        init(heartbeat: Double = 1000, resend: Double = 30, device: String? = nil, lamp: LampSettings = Fixture.lamp,
             injectChip: Bool = true, sendAccession: Bool = false) {
            link = folder + "/ttyICH0"
            let console = console
            chip = SimulatedGPIOChip(lineCount: 8, sink: { console.append($0) })
            let acks = acks
            let statusBox = statusBox
            let serial = SerialSettings(device: device ?? "pty:\(link)", baud: 115_200, rtscts: false, heartbeatSeconds: heartbeat,
                                        resendSeconds: resend, sendAccession: sendAccession, reopenSeconds: 0.1)
            center = AlertCenter(identity: sampleIdentity, serial: serial, lamp: lamp, chip: injectChip ? chip : nil,
                                 logger: quietLogger, status: { statusBox.status },
                                 onAcknowledge: { id, by in acks.append("\(id) \(by.rawValue)") }, clock: clock)
        }

        deinit {
            center.stop()
            try? FileManager.default.removeItem(atPath: folder)
        }

        /// Opens the far end of the center's pty once the link exists.
        func reader() -> LineEnd? {
            var end: LineEnd?
            eventually { end = LineEnd(path: link); return end != nil }
            return end
        }

        func advance(_ seconds: Double) {
            clock.advance(by: seconds)
            center.tick()
        }
    }

    static func decoded(_ raw: String?) -> ProtocolLine? {
        guard let raw, case .success(let line) = LineDecoder.decode(raw) else { return nil }
        return line
    }

    @Test func startSaysHelloThenAnnouncesPendingAlertsWithTheirIds() throws {
        let f = Fixture()
        f.center.start(pending: [sampleAlert("A-1"), sampleAlert("A-2")])
        // The lamp test at start, then the pending alerts from the journal keep the lamp on.
        #expect(f.console.all.contains("lamp: ON"))
        #expect(f.chip.level(2) == true)
        let end = try #require(f.reader())
        let hello = try #require(Self.decoded(end.readLine()))
        #expect(hello.type == "HELLO" && hello.seq == 1)
        #expect(hello["fw"] == "0.4.0" && hello["model"] == "rsna-r18-int8" && hello["model_sha"] == "3f9c2a71be04")
        #expect(hello["board"] == "sim" && hello["boot"] == "9b1e4c7d2a6f0e35")
        let first = try #require(Self.decoded(end.readLine()))
        let second = try #require(Self.decoded(end.readLine()))
        #expect([first.type, second.type] == ["ALERT", "ALERT"])
        #expect([first["id"], second["id"]] == ["A-1", "A-2"])
        #expect([first.seq, second.seq] as [Int] == [2, 3])
        f.advance(1.01)
        #expect(f.center.lampState == .on)
        #expect(f.chip.level(1) == true)
        #expect(f.center.pending.map(\.id) == ["A-1", "A-2"])
        #expect(f.center.health == .ok)
        #expect(f.center.activeFaults.isEmpty)
    }

    @Test func resendsKeepTheIdAndTakeANewSeq() throws {
        let f = Fixture(resend: 30)
        f.center.start(pending: [])
        let end = try #require(f.reader())
        #expect(Self.decoded(end.readLine())?.type == "HELLO")
        f.center.raise(sampleAlert("A-7"))
        f.center.raise(sampleAlert("A-7"))  // already pending: no-op
        let alert = try #require(Self.decoded(end.readLine()))
        #expect(alert.type == "ALERT" && alert["id"] == "A-7" && alert.seq == 2)
        #expect(alert["acc"] == nil)  // send_accession = false
        f.advance(29.9)
        #expect(end.drain().isEmpty)
        f.advance(0.2)
        let again = try #require(Self.decoded(end.readLine()))
        #expect(again.type == "ALERT" && again["id"] == "A-7" && again.seq == 3)
        #expect(again.fields == alert.fields)
        f.advance(30)
        let third = try #require(Self.decoded(end.readLine()))
        #expect(third["id"] == "A-7" && third.seq == 4)
        #expect(end.drain().isEmpty)
        #expect(f.center.pending.count == 1)
    }

    @Test func accessionGoesOnTheWireOnlyWhenConfigured() throws {
        let f = Fixture(sendAccession: true)
        f.center.start(pending: [])
        let end = try #require(f.reader())
        f.center.raise(sampleAlert("A-8", accession: "ACC42"))
        let alert = try #require(end.readUntil(.alert).line)
        #expect(alert["acc"] == "ACC42")
    }

    @Test func anACKClearsTheAlertThroughTheJournalAndTheLampGoesOff() throws {
        let f = Fixture()
        f.center.start(pending: [])
        let end = try #require(f.reader())
        f.advance(1.5)  // past the lamp test
        f.center.raise(sampleAlert("A-9"))
        f.center.raise(sampleAlert("A-10"))
        #expect(f.center.lampState == .on)
        _ = end.readUntil(.alert) { $0["id"] == "A-10" }
        end.send(IntegratorCommand.acknowledge(id: "A-9").line(seq: 1).framed)
        let clear = try #require(end.readUntil(.clear).line)
        #expect(clear["id"] == "A-9" && clear["by"] == "serial")
        #expect(f.acks.all == ["A-9 serial"])
        #expect(f.center.lampState == .on)  // A-10 still pending
        end.send(IntegratorCommand.acknowledge(id: "A-10").line(seq: 2).framed)
        #expect(end.readUntil(.clear).line?["id"] == "A-10")
        #expect(eventually { f.center.pending.isEmpty })
        #expect(f.acks.all == ["A-9 serial", "A-10 serial"])
        #expect(f.center.lampState == .off)
        #expect(f.chip.level(1) == false)
        // An ACK for an alert no longer pending does nothing and is not a bad line.
        end.send(IntegratorCommand.acknowledge(id: "A-9").line(seq: 3).framed)
        #expect(end.drain(quiet: 0.5).isEmpty)
        #expect(f.acks.count == 2)
        #expect(f.center.badInbound == 0)
        #expect(!f.center.acknowledge(id: "A-9", by: .web))
    }

    @Test func theJournalIsWrittenBeforeTheClearGoesOut() throws {
        let f = Fixture()
        let seenPending = Recorder<Int>()
        f.center.start(pending: [sampleAlert("A-11")])
        let center = f.center
        // Acknowledge from the web path: onAcknowledge ran (recorded) before the CLEAR is on the wire.
        let end = try #require(f.reader())
        _ = end.readUntil(.alert)
        #expect(center.acknowledge(id: "A-11", by: .web))
        seenPending.append(center.pending.count)
        #expect(f.acks.all == ["A-11 web"])
        let clear = try #require(end.readUntil(.clear).line)
        #expect(clear["by"] == "web")
        #expect(seenPending.all == [0])
    }

    @Test func statusIsAnsweredAtOnceWithAHeartbeat() throws {
        let f = Fixture(heartbeat: 1000)
        f.statusBox.status = PipelineStatus(state: .degraded, queue: 4, p99Ms: 910)
        f.center.start(pending: [sampleAlert("A-12")])
        let end = try #require(f.reader())
        _ = end.readUntil(.alert)
        end.send(IntegratorCommand.status.line(seq: 1).framed)
        let hb = try #require(end.readUntil(.heartbeat, within: 5).line)
        #expect(hb["state"] == "DEGRADED" && hb["queue"] == "4" && hb["p99_ms"] == "910")
        #expect(hb["lamp"] == "ON" && hb["pending"] == "1" && hb["bad_in"] == "0")
    }

    @Test func heartbeatsComeEveryHeartbeatSecondsWithTheWorstState() throws {
        let f = Fixture(heartbeat: 10)
        f.center.start(pending: [])
        let end = try #require(f.reader())
        #expect(Self.decoded(end.readLine())?.type == "HELLO")
        f.advance(9.9)
        #expect(end.drain().isEmpty)
        f.advance(0.2)
        let hb = try #require(Self.decoded(end.readLine()))
        #expect(hb.type == "HB" && hb.seq == 2)
        #expect(hb["state"] == "OK" && hb["p99_ms"] == "-" && hb["lamp"] == "OFF" && hb["pending"] == "0")
        f.statusBox.status = PipelineStatus(state: .fault, queue: 0, p99Ms: nil)
        f.advance(10)
        let next = try #require(Self.decoded(end.readLine()))
        #expect(next.type == "HB" && next.seq == 3 && next["state"] == "FAULT" && next["lamp"] == "BLINK")
        #expect(f.center.lampState == .blink)
    }

    @Test func testLineRunsALampTest() throws {
        let f = Fixture()
        f.center.start(pending: [])
        let end = try #require(f.reader())
        f.advance(1.5)
        #expect(f.chip.level(1) == false)
        end.send(IntegratorCommand.test.line(seq: 1).framed)
        #expect(eventually { f.chip.level(1) == true })
        #expect(f.center.lampState == .on)
        f.advance(0.9)
        #expect(f.chip.level(1) == true)
        f.advance(0.2)
        #expect(f.chip.level(1) == false)
        #expect(f.center.lampState == .off)
    }

    @Test func badInboundLinesAreCountedAndNothingElseHappens() throws {
        let f = Fixture()
        f.center.start(pending: [sampleAlert("A-13")])
        let end = try #require(f.reader())
        _ = end.readUntil(.alert)
        let good = IntegratorCommand.acknowledge(id: "A-13").line(seq: 1).framed
        let badChecksum = String(good.dropLast(4)) + (good.dropLast(2).hasSuffix("00") ? "01" : "00") + "\r\n"
        end.send(badChecksum)
        #expect(eventually { f.center.badInbound == 1 })
        end.send(LineProtocol.frame(body: "ICH1,2,REBOOT"))  // unknown type
        end.send(ApplianceMessage.clear(id: "A-13", by: .serial).line(seq: 3).framed)  // valid, but not an integrator line
        end.send("garbage without framing\r\n")
        #expect(eventually { f.center.badInbound == 4 })
        #expect(end.drain(quiet: 0.5).isEmpty)
        #expect(f.acks.count == 0)
        #expect(f.center.pending.map(\.id) == ["A-13"])
        end.send(IntegratorCommand.status.line(seq: 5).framed)
        #expect(end.readUntil(.heartbeat).line?["bad_in"] == "4")
    }

    @Test func backPressureWithNoReaderNeverBlocksAndDropsNoAlert() throws {
        let f = Fixture(heartbeat: 1)
        f.center.start(pending: [])
        // Nobody reads the far end: the pty's buffer (a few KiB) fills, then the link's queue holds the rest.
        var slowest = 0.0
        for i in 0..<300 {
            let t0 = Date()
            f.center.raise(sampleAlert("A-\(1000 + i)"))
            f.center.publish(sampleResult(alert: "A-\(1000 + i)"))
            f.advance(1)  // a heartbeat due every turn
            slowest = max(slowest, Date().timeIntervalSince(t0))
        }
        #expect(slowest < 0.5, "a call waited \(slowest) s on the port")
        let link = try #require(f.center.serialLink)
        #expect(eventually { link.queuedCount > 0 })
        #expect(link.droppedHeartbeats > 0)
        // A reader arrives and drains: every ALERT and RESULT arrives, in order, with consecutive SEQs.
        let end = try #require(f.reader())
        var alerts: [String] = [], results: [String] = [], seqs: [Int] = []
        while let raw = end.readLine(within: 3) {
            let line = try #require(Self.decoded(raw), "invalid line \(raw)")
            seqs.append(line.seq)
            if line.type == "ALERT" { alerts.append(line["id"]!) }
            if line.type == "RESULT" { results.append(line["alert"]!) }
            if results.count == 300 && Set(alerts).count == 300 { break }
        }
        let expected = (0..<300).map { "A-\(1000 + $0)" }
        // Resends of the early alerts (they fell due while the port was blocked) may come in between.
        var firstSeen: [String] = []
        for id in alerts where !firstSeen.contains(id) { firstSeen.append(id) }
        #expect(firstSeen == expected)
        #expect(results == expected)
        #expect(seqs == Array(1...seqs.count))
    }

    @Test func unplugAndReturn() throws {
        let folder = temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let path = folder + "/ttyUSB0"
        var adapter: TestPty? = TestPty(linkAt: path)
        let f = Fixture(device: path)
        f.center.start(pending: [sampleAlert("A-20")])
        var end = adapter!.master
        #expect(f.center.serialLink?.device == .tty(path))
        #expect(Self.decoded(end.readLine())?.type == "HELLO")
        #expect(Self.decoded(end.readLine())?["id"] == "A-20")
        f.advance(1.5)

        adapter!.unplug()
        adapter = nil
        #expect(eventually { f.center.activeFaults.contains(.serial) })
        #expect(f.center.health == .fault)
        // Meanwhile the appliance goes on: a new alert, an acknowledge, a result; nothing blocks.
        f.center.raise(sampleAlert("A-21"))
        f.center.raise(sampleAlert("A-22"))
        #expect(f.center.acknowledge(id: "A-22", by: .web))
        f.center.publish(sampleResult(alert: "A-21"))
        f.advance(31)  // a resend falls due while the port is away

        // The cable comes back (a new tty at the same path): HELLO at SEQ 1, every pending ALERT, then what waited.
        adapter = TestPty(linkAt: path)
        end = adapter!.master
        let hello = try #require(Self.decoded(end.readLine()))
        #expect(hello.type == "HELLO" && hello.seq == 1)
        var lines: [ProtocolLine] = []
        while let raw = end.readLine(within: 1) { if let line = Self.decoded(raw) { lines.append(line) } }
        #expect(lines.map(\.seq) == Array(2..<(2 + lines.count)))
        #expect(Array(lines.prefix(2).map { $0.type + " " + ($0["id"] ?? "") }) == ["ALERT A-20", "ALERT A-21"])
        let rest = lines.dropFirst(2).map(\.type)
        // What waited, in order: the fault, A-22 raised and acknowledged while away, the result.
        #expect(rest == ["FAULT", "ALERT", "CLEAR", "RESULT"])
        #expect(lines.first { $0.type == "FAULT" }?["code"] == "SERIAL")
        #expect(eventually { f.center.activeFaults.isEmpty })
        #expect(f.center.serialLink?.opens == 2)
        adapter = nil
        _ = adapter
    }

    @Test func aMissingGPIOChipIsAFaultAndSerialAlertsStillGo() throws {
        let lamp = LampSettings(backend: "gpiod", chip: "ichd-no-such-chip", alertLine: 17, readyLine: 27, buzzerLine: nil,
                                buttonLine: 22, activeLow: true, buttonDebounceMs: 50)
        let f = Fixture(lamp: lamp, injectChip: false)
        #expect(f.center.activeFaults == [.gpio])
        #expect(f.center.health == .fault)
        #expect(f.center.lampController == nil)
        f.center.start(pending: [])
        let end = try #require(f.reader())
        #expect(Self.decoded(end.readLine())?.type == "HELLO")
        let fault = try #require(Self.decoded(end.readLine()))
        #expect(fault.type == "FAULT" && fault["code"] == "GPIO")
        #expect(LineProtocol.decodeValue(fault["msg"]!).contains("ichd-no-such-chip"))
        f.center.raise(sampleAlert("A-30"))
        #expect(end.readUntil(.alert).line?["id"] == "A-30")
        end.send(IntegratorCommand.acknowledge(id: "A-30").line(seq: 1).framed)
        #expect(end.readUntil(.clear).line?["id"] == "A-30")
        #expect(f.acks.all == ["A-30 serial"])
    }

    @Test func aChipFailingWhileRunningIsAGPIOFault() throws {
        let f = Fixture()
        f.center.start(pending: [])
        let end = try #require(f.reader())
        f.advance(1.5)
        f.chip.fail(with: ENODEV)
        f.center.raise(sampleAlert("A-31"))
        f.advance(0.1)
        #expect(f.center.activeFaults == [.gpio])
        #expect(f.center.health == .fault)
        let fault = try #require(end.readUntil(.fault).line)
        #expect(fault["code"] == "GPIO")
    }

    @Test func anUnknownLampBackendIsAGPIOFault() {
        var lamp = Fixture.lamp
        lamp.backend = "hal9000"
        let f = Fixture(lamp: lamp, injectChip: false)
        #expect(f.center.activeFaults == [.gpio])
    }

    @Test func aButtonPressAcknowledgesEveryPendingAlert() throws {
        let f = Fixture()
        f.center.start(pending: [sampleAlert("A-40")])
        let end = try #require(f.reader())
        f.center.raise(sampleAlert("A-41"))
        _ = end.readUntil(.alert) { $0["id"] == "A-41" }
        f.chip.press(4, at: 50)
        #expect(eventually { f.acks.count == 2 })
        #expect(f.acks.all == ["A-40 button", "A-41 button"])
        let first = try #require(end.readUntil(.clear).line)
        let second = try #require(end.readUntil(.clear).line)
        #expect([first["id"], second["id"]] == ["A-40", "A-41"])
        #expect([first["by"], second["by"]] == ["button", "button"])
        f.advance(1.5)
        #expect(f.center.lampState == .off)
        #expect(f.chip.level(1) == false)
    }

    @Test func theReadyLampFollowsTheScoringLoop() throws {
        let f = Fixture()
        f.center.start(pending: [])
        f.advance(1.5)
        f.center.scoringLoopAlive()
        #expect(f.chip.level(2) == true)
        f.advance(0.5)
        #expect(f.chip.level(2) == false)
        f.advance(6)
        #expect(f.chip.level(2) == false)
        #expect(f.center.lampController?.readyPulsing == false)
    }

    @Test func stopPutsLinesOffReleasesThemAndRemovesThePtyLink() throws {
        let f = Fixture()
        f.center.start(pending: [sampleAlert("A-50")])
        let end = try #require(f.reader())
        _ = end.readUntil(.alert)
        // A reader keeps reading while the center stops: the RESULT queued just before stop reaches it.
        let received = Recorder<String>()
        let done = DispatchSemaphore(value: 0)
        let reading = Thread {
            while let line = end.readLine(within: 3) { received.append(line) }
            done.signal()
        }
        reading.start()
        f.center.publish(sampleResult(alert: "A-50"))
        f.center.stop()
        #expect(eventually { received.all.contains { Self.decoded($0)?.type == "RESULT" } })
        #expect(f.chip.level(1) == false && f.chip.level(2) == false)
        #expect(!f.chip.isRequested(1) && !f.chip.isRequested(4))
        #expect((try? FileManager.default.destinationOfSymbolicLink(atPath: f.link)) == nil)
        done.wait()
    }
}
