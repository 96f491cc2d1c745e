import Foundation
import ICHAlerts
import Testing

@Suite struct LineProtocolTests {
    @Test func checksumIsTheXorOfTheBodyInUppercaseHex() {
        #expect(LineProtocol.checksum(Array("A".utf8)) == 0x41)
        #expect(LineProtocol.checksum(Array("AB".utf8)) == 0x41 ^ 0x42)
        // The NMEA 0183 textbook sentence: a reference outside this code.
        #expect(LineProtocol.frame(body: "GPGLL,5300.97914,N,00259.98174,E,125926,A") == "$GPGLL,5300.97914,N,00259.98174,E,125926,A*28\r\n")
        #expect(LineProtocol.frame(body: "ICH1,1,STATUS") == "$ICH1,1,STATUS*\(hex(LineProtocol.checksum(Array("ICH1,1,STATUS".utf8))))\r\n")
    }

    private func hex(_ b: UInt8) -> String { String(format: "%02X", b) }

    static let allMessages: [ApplianceMessage] = [
        .hello(sampleIdentity),
        .heartbeat(HeartbeatFields(pipeline: PipelineStatus(state: .degraded, queue: 3, p99Ms: 840), lamp: .blink, pending: 0, badInbound: 2)),
        .heartbeat(HeartbeatFields(pipeline: PipelineStatus(state: .ok, queue: 0, p99Ms: nil), lamp: .off, pending: 0, badInbound: 0)),
        .alert(sampleAlert(), sendAccession: false),
        .alert(sampleAlert(), sendAccession: true),
        .result(sampleResult()),
        .result(sampleResult(alert: nil)),
        .fault(.gpio, "open GPIO chip \"gpiochip0\": No such file or directory (errno 2)"),
        .clear(id: "A-20261126-0001", by: .button),
    ]

    @Test(arguments: allMessages)
    func everyApplianceLineIsValidWithinTheGrammar(_ message: ApplianceMessage) throws {
        let framed = message.line(seq: 7).framed
        #expect(framed.hasPrefix("$ICH1,7,\(message.type.rawValue)"))
        #expect(framed.hasSuffix("\r\n"))
        #expect(framed.utf8.count <= LineProtocol.maxLineLength)
        #expect(framed.utf8.allSatisfy { ($0 >= 0x20 && $0 < 0x7F) || $0 == 0x0D || $0 == 0x0A })
        let line = try LineDecoder.decode(framed).get()
        #expect(line.seq == 7)
        #expect(line.type == message.type.rawValue)
        for field in line.fields {
            #expect(LineProtocol.isKey(field.key))
            #expect(LineProtocol.isValue(field.value))
        }
        #expect(line == message.line(seq: 7))
    }

    @Test func alertLineCarriesEveryKeyAndAccessionOnlyWhenAsked() throws {
        let line = try LineDecoder.decode(ApplianceMessage.alert(sampleAlert(), sendAccession: false).line(seq: 3).framed).get()
        #expect(line.fields.map(\.key) == ["id", "t", "study", "series", "slice", "any", "edh", "iph", "ivh", "sah", "sdh", "top", "lat_ms"])
        #expect(line["t"] == "2026-11-26T21:14:08.123Z")
        #expect(line["any"] == "0.912")
        #expect(line["top"] == "sdh")
        #expect(line["slice"] == "17")
        #expect(line["acc"] == nil)
        let withAccession = ApplianceMessage.alert(sampleAlert(), sendAccession: true).line(seq: 3)
        // "ACC 42,7": the space and the comma would break the grammar; they go percent-encoded.
        #expect(withAccession["acc"] == "ACC%2042%2C7")
        #expect(LineProtocol.decodeValue(withAccession["acc"]!) == "ACC 42,7")
    }

    @Test func valuesThatWouldBreakTheGrammarAreEncodedNeverRaw() throws {
        var alert = sampleAlert()
        alert.studyUID = "1.2.3, 4*5$6=7%8"
        alert.seriesUID = ""
        let line = ApplianceMessage.alert(alert, sendAccession: false).line(seq: 1)
        #expect(line["study"] == "1.2.3%2C%204%2A5%246%3D7%258")
        #expect(line["series"] == "-")
        #expect(LineProtocol.decodeValue(line["study"]!) == alert.studyUID)
        #expect(LineDecoder.inspect(line.framed).isValid)
        // A long value is cut at 64 bytes, never inside a %HH.
        let long = LineProtocol.encodeValue(String(repeating: "a,", count: 100))
        #expect(long.utf8.count <= 64)
        #expect(LineProtocol.isValue(long))
        #expect(!long.hasSuffix("%") && !long.dropLast().hasSuffix("%"))
        // A message longer than a line allows still makes a valid line.
        let fault = ApplianceMessage.fault(.disk, String(repeating: "disk full ", count: 100)).line(seq: 99_999).framed
        #expect(fault.utf8.count <= LineProtocol.maxLineLength)
        #expect(LineDecoder.inspect(fault).isValid)
        // Unicode goes as its UTF-8 bytes.
        #expect(LineProtocol.encodeValue("Zürich") == "Z%C3%BCrich")
        #expect(LineProtocol.decodeValue("Z%C3%BCrich") == "Zürich")
    }

    @Test func probabilitiesHaveThreeDecimalsAndMissingClassesADash() {
        #expect(LineProtocol.probability(0.12345) == "0.123")
        #expect(LineProtocol.probability(0.9996) == "1.000")
        #expect(LineProtocol.probability(1.7) == "1.000")
        #expect(LineProtocol.probability(-0.1) == "0.000")
        #expect(LineProtocol.probability(nil) == "-")
        #expect(LineProtocol.probability(.nan) == "-")
        let anyOnly = ClassProbabilities(classNames: ["any"], probabilities: [0.5])
        let line = ApplianceMessage.result(SeriesResultNotice(studyUID: "1.2", seriesUID: "1.2.3", positive: false, scored: 1,
                                                              skipped: 0, rejected: 0, maxima: anyOnly, alertID: nil)).line(seq: 1)
        #expect(line["any"] == "0.500")
        #expect(line["edh"] == "-")
        #expect(line["alert"] == "-")
        #expect(LineDecoder.inspect(line.framed).isValid)
    }

    /// RESULT's `ood` (added after the first v1 readers): the series' out-of-distribution score with two
    /// decimals, `-` when unknown; a RESULT without it (an older appliance) is still valid, a malformed one is not.
    @Test func resultCarriesOOD() throws {
        var r = sampleResult()
        #expect(ApplianceMessage.result(r).line(seq: 1)["ood"] == "-")
        r.ood = 0.4149
        let inDistribution = ApplianceMessage.result(r).line(seq: 1)
        #expect(inDistribution["ood"] == "0.41" && inDistribution.fields.last?.key == "ood")
        #expect(LineDecoder.inspect(inDistribution.framed).isValid)
        r.ood = 37.526
        #expect(ApplianceMessage.result(r).line(seq: 1)["ood"] == "37.53")
        r.ood = 1e9
        #expect(ApplianceMessage.result(r).line(seq: 1)["ood"] == "999.99")
        #expect(LineProtocol.oodScore(-1) == "0.00" && LineProtocol.oodScore(.nan) == "-")

        var older = ApplianceMessage.result(sampleResult()).line(seq: 2)
        older.fields.removeAll { $0.key == "ood" }
        #expect(LineDecoder.inspect(older.framed).isValid, "a RESULT of an appliance before ood")
        for bad in ["1", "0.4", "01.00", "-1.00", "1.000", "x"] {
            var line = ApplianceMessage.result(sampleResult()).line(seq: 3)
            line.fields = line.fields.map { $0.key == "ood" ? ProtocolField("ood", bad) : $0 }
            #expect(!LineDecoder.inspect(line.framed).isValid, "ood=\(bad)")
        }
    }

    @Test func timesAreUTCWithMilliseconds() {
        #expect(LineProtocol.timestamp(Date(timeIntervalSince1970: 0)) == "1970-01-01T00:00:00.000Z")
        #expect(LineProtocol.timestamp(Date(timeIntervalSince1970: 1_795_727_648.123)) == "2026-11-26T21:14:08.123Z")
        #expect(LineProtocol.timestamp(Date(timeIntervalSince1970: 1_795_727_648.9996)) == "2026-11-26T21:14:09.000Z")
    }

    @Test func heartbeatSaysDashForAnUnknownP99() throws {
        let line = ApplianceMessage.heartbeat(HeartbeatFields(pipeline: PipelineStatus(state: .ok, queue: 0, p99Ms: nil), lamp: .off, pending: 0,
                                                              badInbound: 0)).line(seq: 2)
        #expect(line["p99_ms"] == "-" && line["p50_ms"] == "-" && line["p95_ms"] == "-" && line["over"] == "0")
        #expect(line.fields.map(\.key) == ["state", "queue", "p99_ms", "lamp", "pending", "bad_in", "p50_ms", "p95_ms", "over"])
        let known = ApplianceMessage.heartbeat(HeartbeatFields(pipeline: PipelineStatus(state: .degraded, queue: 3, p99Ms: 900, p50Ms: 40, p95Ms: 700, overBudget: 12),
                                                               lamp: .blink, pending: 0, badInbound: 0)).line(seq: 3)
        #expect(known["p50_ms"] == "40" && known["p95_ms"] == "700" && known["over"] == "12")
        // A v1 HB from before these keys is still valid.
        let old = LineDecoder.inspect(Array("$ICH1,2,HB,state=OK,queue=0,p99_ms=412,lamp=OFF,pending=0,bad_in=0*60\r".utf8))
        #expect(old.isValid, "\(old.problem ?? "")")
    }

    @Test func integratorLinesRoundTrip() throws {
        for command in [IntegratorCommand.acknowledge(id: "A-1"), .status, .test] {
            let line = try LineDecoder.decode(command.line(seq: 4).framed).get()
            #expect(IntegratorCommand(line) == command)
        }
    }

    static let invalidLines: [(String, String)] = {
        let good = ApplianceMessage.clear(id: "A-1", by: .serial).line(seq: 5).framed
        let body = "ICH1,5,CLEAR,id=A-1,by=serial"
        let sum = LineProtocol.checksum(Array(body.utf8))
        let wrong = String(format: "%02X", sum ^ 0x01)
        return [
            ("$\(body)*\(wrong)\r\n", "bad checksum"),
            ("$\(body)*G1\r\n", "checksum is not two uppercase hex digits"),
            (good.replacingOccurrences(of: "\r\n", with: "\n"), "no CR"),
            (String(good.dropFirst()), "$"),
            ("$\(body)\r\n", "no *HH"),
            (LineProtocol.frame(body: "ICH2,5,CLEAR,id=A-1,by=serial"), "version"),
            (LineProtocol.frame(body: "ICH1,x,CLEAR,id=A-1,by=serial"), "SEQ"),
            (LineProtocol.frame(body: "ICH1,05,CLEAR,id=A-1,by=serial"), "SEQ"),
            (LineProtocol.frame(body: "ICH1,5,NOPE,id=A-1"), "unknown type"),
            (LineProtocol.frame(body: "ICH1,5,CLEAR,Id=A-1,by=serial"), "bad key"),
            (LineProtocol.frame(body: "ICH1,5,CLEAR,id=A 1,by=serial"), "bad value"),
            (LineProtocol.frame(body: "ICH1,5,CLEAR,id=,by=serial"), "bad value"),
            (LineProtocol.frame(body: "ICH1,5,CLEAR,id=A-1,id=A-2,by=serial"), "repeated"),
            (LineProtocol.frame(body: "ICH1,5,CLEAR,id=A-1"), "without by"),
            (LineProtocol.frame(body: "ICH1,5,CLEAR,id=A-1,by=phone"), "not a valid value"),
            (LineProtocol.frame(body: "ICH1,5,HB,state=OK,queue=0,p99_ms=-,lamp=DIM,pending=0,bad_in=0"), "not a valid value"),
            (LineProtocol.frame(body: "ICH1,5,CLEAR,idA-1,by=serial"), "key=value"),
            (LineProtocol.frame(body: "ICH1,5,FAULT,code=GPIO,msg=x" + String(repeating: "y", count: 500)), "longer than 512"),
            ("$ICH1,5,STATUS\u{7}*00\r\n", "non-printable"),
        ]
    }()

    @Test(arguments: invalidLines)
    func invalidLinesAreRefusedWithTheReason(_ line: String, _ reason: String) {
        let inspected = LineDecoder.inspect(line)
        #expect(!inspected.isValid)
        #expect(inspected.problem?.contains(reason) == true, "\(inspected.problem ?? "valid") for \(line.debugDescription)")
        #expect(inspected.line == nil)
    }

    @Test func aLowercaseChecksumIsInvalid() {
        let body = "ICH1,1,TEST"
        let sum = LineProtocol.checksum(Array(body.utf8))
        let line = "$\(body)*\(String(format: "%02x", sum))\r\n"
        #expect(LineDecoder.inspect(line).isValid == (String(format: "%02x", sum) == String(format: "%02X", sum)))
        #expect(!LineDecoder.inspect("$ICH1,1,TEST*zz\r\n").isValid)
    }

    @Test func unknownKeysOfAKnownTypeAreAllowed() {
        // Forward compatibility within version 1: a reader ignores keys it does not know.
        let line = LineProtocol.frame(body: "ICH1,5,CLEAR,id=A-1,by=web,user=dr_x")
        #expect(LineDecoder.inspect(line).isValid)
    }

    @Test func anInvalidLineStillShowsWhatCanBeRead() {
        let inspected = LineDecoder.inspect("$ICH1,9,CLEAR,id=A-1,by=web*00\r")
        #expect(inspected.seq == 9)
        #expect(inspected.type == "CLEAR")
        #expect(inspected.fields == [ProtocolField("id", "A-1"), ProtocolField("by", "web")])
        #expect(inspected.problem?.hasPrefix("bad checksum") == true)
        #expect(inspected.raw == "$ICH1,9,CLEAR,id=A-1,by=web*00")
    }

    @Test func assemblerSplitsAtLFAndCutsOverlongRuns() {
        var assembler = LineAssembler()
        #expect(assembler.append(Array("$A*41\r\n$B".utf8)) == [Array("$A*41\r".utf8)])
        #expect(assembler.append(Array("*42\r\n".utf8)) == [Array("$B*42\r".utf8)])
        let lines = assembler.append([UInt8](repeating: 0x41, count: 600) + [0x0A] + Array("$C*43\r\n".utf8))
        #expect(lines.count == 2)
        #expect(lines[0] == nil)
        #expect(lines[1] == Array("$C*43\r".utf8))
    }

    /// The worked examples of docs/serial-protocol.md: every `$ICH1` line there must parse as valid, and every
    /// line type must have one, so the document cannot drift from the code.
    @Test func theProtocolDocumentsExamplesAreValid() throws {
        let doc = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("docs/serial-protocol.md")
        let text = try String(contentsOf: doc, encoding: .utf8)
        let examples = text.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.filter { $0.hasPrefix("$ICH1,") }
        var types = Set<String>()
        for example in examples {
            let inspected = LineDecoder.inspect(example + "\r")
            #expect(inspected.isValid, "\(example): \(inspected.problem ?? "")")
            if let type = inspected.type { types.insert(type) }
        }
        #expect(types == Set(LineType.allCases.map(\.rawValue)))
    }
}

extension ApplianceMessage: CustomTestStringConvertible {
    public var testDescription: String { type.rawValue }
}
