import Foundation
import ICHIngest
import ICHTestSupport
import Testing

@Suite struct PhantomCLITests {
    let dir = TemporaryDirectory()

    func run(_ arguments: String...) throws -> Int32 { try runICHD(arguments).status }

    /// `--family`: standard by default (the bundled model's kind), varied and heldout (docs/phantoms.md), each
    /// with its own UIDs; a family name not known is refused.
    @Test func families() throws {
        #expect(try run("phantom", "--out", dir.file("h"), "--series", "1", "--seed", "400000", "--family", "heldout", "--positive") == 0)
        #expect(try run("phantom", "--out", dir.file("s"), "--series", "1", "--seed", "400000", "--positive") == 0)
        #expect(try run("phantom", "--out", dir.file("v"), "--series", "1", "--seed", "400000", "--family", "varied", "--positive") == 0)
        let h = try DicomSliceReader(path: dir.file("h/series-001/010.dcm")).header
        let s = try DicomSliceReader(path: dir.file("s/series-001/010.dcm")).header
        let v = try DicomSliceReader(path: dir.file("v/series-001/010.dcm")).header
        #expect(h.sopInstanceUID.hasPrefix("2.25.400000.2.") && s.sopInstanceUID.hasPrefix("2.25.400000.1.")
                && v.sopInstanceUID.hasPrefix("2.25.400000.3."))
        let hBytes = try Data(contentsOf: URL(fileURLWithPath: dir.file("h/series-001/010.dcm")))
        let sBytes = try Data(contentsOf: URL(fileURLWithPath: dir.file("s/series-001/010.dcm")))
        #expect(hBytes != sBytes)
        #expect(try run("phantom", "--out", dir.file("x"), "--family", "other") != 0)
    }

    @Test func sameSeedSameBytesAndLabelsMatchTheSlices() throws {
        #expect(try run("phantom", "--out", dir.file("a"), "--series", "2", "--seed", "5", "--positive") == 0)
        #expect(try run("phantom", "--out", dir.file("b"), "--series", "2", "--seed", "5", "--positive") == 0)
        let fm = FileManager.default
        let files = try fm.subpathsOfDirectory(atPath: dir.file("a")).filter { $0.hasSuffix(".dcm") || $0.hasSuffix(".csv") }.sorted()
        #expect(files.count > 40)
        for f in files {
            #expect(fm.contentsEqual(atPath: dir.file("a/" + f), andPath: dir.file("b/" + f)), "\(f) differs between runs")
        }
        // Every slice is a valid CT slice, every label names an existing slice, and a positive series has bleeds.
        let labels = try String(contentsOfFile: dir.file("a/labels.csv"), encoding: .utf8).split(separator: "\n").dropFirst()
        var uids = Set<String>()
        for f in files where f.hasSuffix(".dcm") {
            uids.insert(try DicomSliceReader(path: dir.file("a/" + f)).header.sopInstanceUID)
        }
        let labelled = Set(labels.map { $0.split(separator: "_")[1] }.map(String.init))
        #expect(labelled == uids)
        #expect(labels.count == uids.count * 6)
        #expect(labels.contains { $0.hasSuffix("_any,1") })
        // slices.csv: one row per slice; a subtype is labelled exactly where it drew at least a few pixels.
        let sizes = try String(contentsOfFile: dir.file("a/slices.csv"), encoding: .utf8).split(separator: "\n").map { $0.split(separator: ",").map(String.init) }
        #expect(sizes[0] == ["SOPInstanceUID", "SeriesInstanceUID", "Instance", "epidural_pixels", "intraparenchymal_pixels",
                             "intraventricular_pixels", "subarachnoid_pixels", "subdural_pixels"])
        #expect(Set(sizes.dropFirst().map { $0[0] }) == uids)
        let positive = Set(labels.filter { $0.hasSuffix(",1") }.map(String.init))
        for row in sizes.dropFirst() {
            for (i, subtype) in ["epidural", "intraparenchymal", "intraventricular", "subarachnoid", "subdural"].enumerated() {
                let pixels = try #require(Int(row[3 + i]))
                #expect(positive.contains("ID_\(row[0])_\(subtype),1") == (pixels >= 4), "\(row[0]) \(subtype): \(pixels) pixels")
            }
        }
    }
}
