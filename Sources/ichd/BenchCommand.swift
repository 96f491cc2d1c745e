import ArgumentParser
import Foundation
import ICHIngest
import ICHPhantom
import ICHPreprocessing

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Benchmark a pipeline stage (build with -c release; debug timings mean nothing).",
        discussion: """
            --stage preprocess: open + decode + Hounsfield conversion + coverage + crop + resize + normalise of \
            one slice, single-threaded, repeated. Without --input a synthetic 512x512 head slice (16-bit signed, \
            explicit little endian) is written to a temporary folder and used.
            """)

    enum Stage: String, ExpressibleByArgument, CaseIterable {
        case preprocess
    }

    @Option(help: "Stage to measure: \(Stage.allCases.map(\.rawValue).joined(separator: ", ")).")
    var stage: Stage = .preprocess

    @Option(help: "Slice file to use (DICOM or JPEG).")
    var input: String?

    @Option(help: "Timed runs after warm-up.")
    var runs: Int = 200

    @Option(help: "Untimed warm-up runs.")
    var warmup: Int = 20

    @Flag(help: "Print one JSON object.")
    var json = false

    func validate() throws {
        if runs < 1 || warmup < 0 { throw ValidationError("--runs must be at least 1 and --warmup at least 0") }
    }

    func run() throws {
        let tempDir = FileManager.default.temporaryDirectory.appendingPathComponent("ichd-bench-\(getpid())")
        defer { try? FileManager.default.removeItem(at: tempDir) }
        let path: String
        if let input {
            path = input
        } else {
            try FileManager.default.createDirectory(at: tempDir, withIntermediateDirectories: true)
            path = tempDir.appendingPathComponent("slice.dcm").path
            var synth = HeadSliceSynthesizer(size: 512, seed: 1)
            synth.bleed = (0.4, 0.45, 0.04, 70)
            let identity = CTSliceIdentity(studyInstanceUID: "2.25.1", seriesInstanceUID: "2.25.1.1", sopInstanceUID: "2.25.1.1.1")
            try CTSliceWriter.write(image: synth.render(), identity: identity, storage: CTStorage(), to: path)
        }
        let pipeline = SlicePipeline(preprocessing: .rsna)
        var decodeTimes: [Double] = [], totalTimes: [Double] = []
        for i in 0..<(warmup + runs) {
            let start = ContinuousClock.now
            var decoded = ContinuousClock.now
            var failure: IngestRejection?
            // Decode and preprocess timed separately through the pipeline's own steps.
            do {
                switch try SliceFile.open(path: path) {
                case .dicom(let reader):
                    let slice = try reader.readFrame(0)
                    decoded = .now
                    _ = pipeline.preprocessor.assess(slice.image)
                    _ = pipeline.preprocessor.prepare(slice.image)
                case .jpeg(let image):
                    decoded = .now
                    _ = pipeline.preprocessor.assess(image)
                    _ = pipeline.preprocessor.prepare(image)
                }
            } catch {
                failure = error
            }
            if let failure {
                printError("\(path): \(failure.message)")
                throw rejectedExit
            }
            let end = ContinuousClock.now
            if i >= warmup {
                decodeTimes.append(Self.ms(decoded - start))
                totalTimes.append(Self.ms(end - start))
            }
        }
        let total = Summary(totalTimes), decode = Summary(decodeTimes)
        let preprocess = Summary(zip(totalTimes, decodeTimes).map { $0 - $1 })
        if json {
            let object: [String: Any] = [
                "stage": stage.rawValue, "input": input ?? "synthetic 512x512 CT", "runs": runs, "threads": 1,
                "min_ms": total.min, "median_ms": total.median, "p99_ms": total.p99, "mean_ms": total.mean,
                "decode_median_ms": decode.median, "preprocess_median_ms": preprocess.median,
            ]
            let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
        } else {
            print("stage preprocess, \(input ?? "synthetic 512x512 CT slice"), \(runs) runs, 1 thread")
            print(String(format: "  decode+preprocess  min %.3f ms  median %.3f ms  p99 %.3f ms", total.min, total.median, total.p99))
            print(String(format: "  decode (DCMTK+HU)  median %.3f ms", decode.median))
            print(String(format: "  preprocess         median %.3f ms", preprocess.median))
        }
    }

    static func ms(_ d: Duration) -> Double {
        Double(d.components.seconds) * 1000 + Double(d.components.attoseconds) / 1e15
    }
}

/// min / median / p99 / mean of timings.
struct Summary {
    let min: Double, median: Double, p99: Double, mean: Double

    init(_ values: [Double]) {
        let sorted = values.sorted()
        min = sorted.first ?? 0
        median = sorted.isEmpty ? 0 : sorted[sorted.count / 2]
        p99 = sorted.isEmpty ? 0 : sorted[Swift.min(sorted.count - 1, Int((Double(sorted.count) * 0.99).rounded(.up)) - 1)]
        mean = sorted.isEmpty ? 0 : sorted.reduce(0, +) / Double(sorted.count)
    }
}
