import ArgumentParser
import Foundation
import ICHEngine
import ICHKernels
import ICHIngest
import ICHModel
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
            --model M.ichm (stage engine): int8 inference on one preprocessed slice: min/median/p99, a per-layer \
            table with GMAC/s, whole-network GMAC/s, peak RSS, model load time and load-to-first-result time.
            """)

    enum Stage: String, ExpressibleByArgument, CaseIterable {
        case preprocess
        case engine
    }

    @Option(help: "Stage to measure: \(Stage.allCases.map(\.rawValue).joined(separator: ", ")) (engine with --model).")
    var stage: Stage?

    @Option(help: "int8 model (.ichm) for the engine benchmark.")
    var model: String?

    @Option(help: "Engine threads (engine stage).")
    var threads = 1

    @Option(help: "Convolution kernel: pairs (int16 pair products, x86's vpmaddwd) or dot (dot-product reduction, ARM's sdot); default: this machine's native one.")
    var kernel: ConvKernel = .native

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
        if !(1...64).contains(threads) { throw ValidationError("--threads must be within 1...64") }
        if stage == .engine && model == nil { throw ValidationError("--stage engine needs --model M.ichm") }
        if stage == .preprocess && model != nil { throw ValidationError("--model belongs to the engine stage") }
    }

    func run() throws {
        if let model { return try benchEngine(model) }
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
                    let assessment = pipeline.preprocessor.assess(slice.image)
                    _ = pipeline.preprocessor.prepare(slice.image, assessment: assessment)
                case .jpeg(let image):
                    decoded = .now
                    let assessment = pipeline.preprocessor.assess(image)
                    _ = pipeline.preprocessor.prepare(image, assessment: assessment)
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
                "stage": "preprocess", "input": input ?? "synthetic 512x512 CT", "runs": runs, "threads": 1,
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

extension BenchCommand {
    func benchEngine(_ path: String) throws {
        let start = ContinuousClock.now
        let scorer: SliceScorer
        do {
            scorer = try SliceScorer(path: path, threads: threads, kernel: kernel)
        } catch {
            printError(error.description)
            throw rejectedExit
        }
        guard case .int8(let engine) = scorer.engine else { preconditionFailure("a model file is int8") }
        let loaded = ContinuousClock.now
        let input = try benchInput(scorer.preprocessing)
        let prepared = ContinuousClock.now
        _ = engine.run(input)
        let firstResult = ContinuousClock.now - prepared + (loaded - start)

        var totals: [Double] = []
        var layerTimes: [String: [Double]] = [:], layerMACs: [String: Int] = [:], order: [String] = []
        for i in 0..<(warmup + runs) {
            let t0 = ContinuousClock.now
            _ = engine.run(input)
            let t = Self.ms(ContinuousClock.now - t0)
            if i >= warmup { totals.append(t) }
        }
        // Per-layer times from separate profiled runs (the clock reads cost a little; totals above are clean).
        for _ in 0..<max(3, min(runs, 20)) {
            _ = engine.run(input, profile: { name, duration, macs in
                if layerTimes[name] == nil { order.append(name) }
                layerTimes[name, default: []].append(Self.ms(duration))
                layerMACs[name] = macs
            })
        }
        // The out-of-distribution score on top of the engine (what SliceScorer adds per slice): the pool of
        // layer4's map and the Mahalanobis distance; for a model with per-layer summaries, theirs (below).
        var oodTimes: [Double] = []
        if scorer.oodLayers == nil, let summary = scorer.oodSummary {
            let features = engine.run(input).features
            var sink = 0.0
            for i in 0..<(warmup + runs) {
                let t0 = ContinuousClock.now
                sink += summary.score(SliceScorer.pooledFeatures(features))
                if i >= warmup { oodTimes.append(Self.ms(ContinuousClock.now - t0)) }
            }
            precondition(sink.isFinite)
        }
        // A model with per-layer summaries: the engine also sums its channel statistics. Runs with and without them
        // alternate, so both medians see the same machine; the ensemble's distances are timed on their own.
        var statisticsRuns: (with: [Double], without: [Double]) = ([], [])
        if let ensemble = scorer.oodLayers {
            let layers = Set(ensemble.layers)
            var stats: [String: ChannelStatistics] = [:]
            for i in 0..<(warmup + runs) {
                let t0 = ContinuousClock.now
                stats = engine.run(input, statistics: layers).channelStatistics
                let t1 = ContinuousClock.now
                _ = engine.run(input)
                let t2 = ContinuousClock.now
                if i >= warmup { statisticsRuns.with.append(Self.ms(t1 - t0)); statisticsRuns.without.append(Self.ms(t2 - t1)) }
            }
            var sink = 0.0
            for i in 0..<(warmup + runs) {
                let t0 = ContinuousClock.now
                sink += ensemble.score { stats[$0.layer]!.vector($0.statistic) }
                if i >= warmup { oodTimes.append(Self.ms(ContinuousClock.now - t0)) }
            }
            precondition(sink.isFinite)
        }
        let ood = oodTimes.isEmpty ? nil : Summary(oodTimes)
        let withStatistics = statisticsRuns.with.isEmpty ? nil : (Summary(statisticsRuns.with), Summary(statisticsRuns.without))
        let total = Summary(totals)
        let macs = layerMACs.values.reduce(0, +)
        let gmacs = Double(macs) / (total.median * 1e6)
        let rss = Self.peakRSSMiB()
        let layers: [(String, Double, Int)] = order.map { ($0, Summary(layerTimes[$0]!).median, layerMACs[$0]!) }
        if json {
            var object: [String: Any] = [
                "stage": "engine", "model": path, "engine": "int8", "activation_bits": engine.activationBits, "kernel": kernel.rawValue, "winograd_layers": engine.winogradLayers, "runs": runs, "threads": threads,
                "input_size": input.height, "min_ms": total.min, "median_ms": total.median, "p99_ms": total.p99,
                "gmacs_per_s": gmacs, "macs": macs, "peak_rss_mib": rss, "load_ms": Self.ms(loaded - start),
                "first_result_ms": Self.ms(firstResult),
                "layers": layers.map { ["name": $0.0, "median_ms": $0.1, "macs": $0.2, "gmacs_per_s": Double($0.2) / ($0.1 * 1e6)] },
            ]
            if let ood { object["ood_median_ms"] = ood.median; object["ood_p99_ms"] = ood.p99 }
            if let (with, without) = withStatistics {
                object["engine_with_statistics_median_ms"] = with.median
                object["engine_without_statistics_median_ms"] = without.median
            }
            let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
            return
        }
        print("stage engine, \(path), int8 (\(kernel.rawValue) kernel), \(input.height)x\(input.width) input, \(runs) runs, \(threads) thread(s)")
        if engine.activationBits != 8 {
            print("  \(engine.activationBits)-bit activations: each convolution runs the byte kernels twice (GMAC/s count its own multiply-adds once)")
        }
        if !engine.winogradLayers.isEmpty { print("  Winograd F(2x2, 3x3) where the shape allows: \(engine.winogradLayers.joined(separator: ", "))") }
        print(String(format: "  total    min %.2f ms  median %.2f ms  p99 %.2f ms  %.2f GMAC/s (%.3f GMAC)",
                     total.min, total.median, total.p99, gmacs, Double(macs) / 1e9))
        print(String(format: "  load %.1f ms, load to first result %.1f ms, peak RSS %.1f MiB",
                     Self.ms(loaded - start), Self.ms(firstResult), rss))
        if let (with, without) = withStatistics {
            print(String(format: "  engine with the ood layers' channel statistics  median %.2f ms, without %.2f ms (alternating runs)",
                         with.median, without.median))
        }
        if let ood, withStatistics != nil {
            print(String(format: "  ood score (the layers' Mahalanobis distances, after the engine)  median %.3f ms  p99 %.3f ms  (%.2f%% of the engine's median)",
                         ood.median, ood.p99, 100 * ood.median / total.median))
        } else if let ood {
            print(String(format: "  ood score (pool + Mahalanobis, after the engine)  median %.3f ms  p99 %.3f ms  (%.2f%% of the engine's median)",
                         ood.median, ood.p99, 100 * ood.median / total.median))
        } else {
            print("  ood score: - (the model carries no out-of-distribution summary)")
        }
        print("  layer                  median ms   GMAC/s")
        for (name, ms, m) in layers {
            let rate = m > 0 ? String(format: "%8.2f", Double(m) / (ms * 1e6)) : "       -"
            print("  \(name.padding(toLength: 22, withPad: " ", startingAt: 0)) \(String(format: "%9.3f", ms))  \(rate)")
        }
    }

    /// The model input for the engine benchmark: --input through the model's preprocessing, or a synthetic slice.
    func benchInput(_ spec: Preprocessing) throws -> FeatureMap {
        let pipeline = SlicePipeline(preprocessing: spec)
        if let input {
            do {
                return FeatureMap(try pipeline.prepareSlice(path: input).input)
            } catch {
                printError("\(input): \(error.message)")
                throw rejectedExit
            }
        }
        var synth = HeadSliceSynthesizer(size: 512, seed: 1)
        synth.bleed = (0.4, 0.45, 0.04, 70)
        let m = pipeline.preprocessor.prepare(synth.render())
        return FeatureMap(m)
    }

    /// Peak resident set size of this process (VmHWM), in MiB.
    static func peakRSSMiB() -> Double {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
              let kb = Double(line.split(separator: " ").dropFirst().first ?? "") else { return 0 }
        return kb / 1024
    }
}

extension ConvKernel: ExpressibleByArgument {}
