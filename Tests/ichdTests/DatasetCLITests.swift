import Foundation
import ICHIngest
import ICHPreprocessing
import ICHTestSupport
import Testing

/// `ichd preprocess --dataset`: the training recipe's input must be exactly what the engine is fed.
@Suite struct DatasetCLITests {
    let dir = TemporaryDirectory()

    @Test func datasetHoldsTheEngineTensorsAndAccountsForEverySlice() throws {
        let images = dir.file("images")
        try FileManager.default.createDirectory(atPath: images + "/sub", withIntermediateDirectories: true)
        let head = try Fixtures.writeSlice(Fixtures.head(size: 96, bleed: true), to: images + "/sub/head.dcm")
        let wrapped = try Fixtures.writeSlice(Fixtures.head(size: 96, seed: 3), to: images + "/wrapped.dcm",
                                              storage: .rsnaWrappedUnsigned12, identity: Fixtures.identity(2))
        let blank = HounsfieldImage(width: 32, height: 32, pixels: .init(repeating: -1000, count: 1024))
        try Fixtures.writeSlice(blank, to: images + "/blank.dcm", identity: Fixtures.identity(3))
        try Data("not a slice".utf8).write(to: URL(fileURLWithPath: images + "/junk.dcm"))

        let out = dir.file("ds")
        let run = try runICHD(["preprocess", images, "--dataset", out])
        #expect(run.status == 0, "\(run.stderr)")
        #expect(run.stdout.contains("2 slices written, 1 skipped (too little brain), 1 rejected, from 4 files"))

        let index = try String(contentsOfFile: out + "/index.csv", encoding: .utf8).split(separator: "\n").map { $0.split(separator: ",", omittingEmptySubsequences: false) }
        #expect(index[0].joined(separator: ",") == "row,key,series,instance,file,frame,brain_coverage")
        let rows = index.dropFirst().map { $0.map(String.init) }
        #expect(rows.map { $0[4] } == ["sub/head.dcm", "wrapped.dcm"])
        #expect(rows.map { $0[1] } == [Fixtures.identity(1).sopInstanceUID, Fixtures.identity(2).sopInstanceUID])

        let excluded = try String(contentsOfFile: out + "/excluded.csv", encoding: .utf8)
        #expect(excluded.contains("blank.dcm,0,skipped,brain coverage 0.0000"))
        #expect(excluded.contains("junk.dcm,,rejected,not_dicom"))

        // Each record is the engine's tensor, rounded to half precision; the spec is the one it was made with.
        let spec = try JSONDecoder().decode(Preprocessing.self, from: Data(contentsOf: URL(fileURLWithPath: out + "/preprocessing.json")))
        #expect(spec == .rsna)
        let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: out + "/tensors.f16")))
        let record = 3 * spec.outputSize * spec.outputSize
        #expect(bytes.count == 2 * record * 2)
        let pipeline = SlicePipeline(preprocessing: spec)
        for (row, path) in [head, wrapped].enumerated() {
            let expected = try pipeline.prepareSlice(path: path).input.tensor
            var worst: Float = 0
            for i in 0..<record {
                let at = 2 * (row * record + i)
                let half = Float16(bitPattern: UInt16(bytes[at]) | UInt16(bytes[at + 1]) << 8)
                #expect(half == Float16(expected[i]), "record \(row) value \(i)")
                if half != Float16(expected[i]) { break }
                worst = max(worst, abs(Float(half) - expected[i]))
            }
            #expect(worst < 2e-3)
        }
    }

    @Test func refusesAFileAndMixedOptions() throws {
        let slice = try Fixtures.writeSlice(Fixtures.head(), to: dir.file("one.dcm"))
        let notFolder = try runICHD(["preprocess", slice, "--dataset", dir.file("ds")])
        #expect(notFolder.status != 0 && notFolder.stderr.contains("is not a folder"))
        let mixed = try runICHD(["preprocess", dir.path, "--dataset", dir.file("ds"), "--out", dir.file("x.jpg")])
        #expect(mixed.status != 0 && mixed.stderr.contains("leave out --out"))
        #expect(!FileManager.default.fileExists(atPath: dir.file("ds")))
    }
}
