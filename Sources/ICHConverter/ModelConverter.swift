import Crypto
import Foundation
import ICHEngine
import ICHIngest
import ICHModel
import ICHPhantom
import ICHPreprocessing

public struct ConversionError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// What `ichd convert` is asked to do.
public struct ConversionOptions: Sendable {
    public var weightsPath: String
    public var layout: WeightLayout?
    /// Folder of DICOM or JPEG slices (searched recursively); nil needs `allowSyntheticCalibration`.
    public var calibrationDirectory: String?
    public var allowSyntheticCalibration = false
    /// Slices held out of calibration for the report; nil: every fifth calibration slice.
    public var heldOutDirectory: String?
    public var classNames: [String]?
    public var thresholds: [Float]?
    public var preprocessing: Preprocessing = .rsna
    public var calibrationSamples = 64
    public var heldOutSamples = 32
    /// Samples on which the calibration methods are compared (int8 runs per method).
    public var selectionSamples = 16
    /// Force a method instead of choosing by measured error.
    public var method: CalibrationMethod?
    /// Correct the systematic part of the quantisation error: each layer's bias for its weight error
    /// (WeightQuantizer), and the classifier's bias for the mean logit shift measured on calibration slices.
    public var biasCorrection = true
    /// How weights are rounded to their int8 grid (GPTQ needs the calibration slices' activations), and whether
    /// the network is channel-equalised first (`ChannelEqualization`): every combination listed is built and the
    /// one with the least measured output error is kept. Trained models differ: the bundled one was fine-tuned
    /// with its round-to-nearest integers in the loop, a random-weight network gains from both (docs/converting.md).
    public var weightRounding: [WeightRounding] = [.nearest, .gptq]
    public var equalization: [Bool] = [false, true]
    public var equalizationAlpha = ChannelEqualization.defaultAlpha
    /// GPTQ's dampening of H's diagonal (fraction of its mean).
    public var gptqDamp = GPTQ.defaultDamp
    /// Threads for the converter's own heavy loops (GPTQ's statistics).
    public var threads = 2
    /// Keep the residual stream (block outputs as the shortcuts and the pool read them, downsample outputs,
    /// pooled features) as int16 next to the bytes the convolutions read: format version 2. Off: bytes
    /// throughout, format version 1 (what ichd before the int16 shortcut path reads).
    public var wideShortcut = true
    /// Widths of the activations convolutions read: 8 (bytes), 12 (a 16 times finer step, from min-max ranges:
    /// twice the convolution work, format version 3; needs `wideShortcut`). With both, 12 is built only when the
    /// 8-bit model misses `tolerance` on the held-out slices, and kept when it comes closer.
    public var activationBits: [Int] = [8, 12]
    /// The largest |p_int8 - p_float| a class may show on the held-out slices (the calibration slices when none
    /// are held out) before the report warns: the converter's accuracy aim.
    public var tolerance = 0.02
    public var modelCard = "Trained on synthetic phantoms only. Not for clinical use."
    /// Seeds of the synthetic calibration phantoms (kept away from evaluation seeds).
    public var syntheticSeed: UInt64 = 910_000
    /// In-distribution slices (the training set) the out-of-distribution summary is fitted on; nil: the model
    /// gets no summary and reports no `ood` (as before it existed).
    public var oodFitDirectory: String?
    /// Other in-distribution slices (the validation set) that choose the summary's threshold; nil: the
    /// calibration folder.
    public var oodValidationDirectory: String?
    /// Most slices of each of the two sets used.
    public var oodSamples = 2000
    /// The threshold: this quantile of the validation slices' distances.
    public var oodQuantile = 0.995
    /// Activations (engine names: "stem", "maxpool", "layer1.0" ... "layer4.1") whose per-channel statistics get
    /// a summary each, read together as the `ood` score (`OODEnsemble`, metadata key `ood_layers`); empty: the
    /// layer4 summary alone, as before. Needs `oodFitDirectory`.
    public var oodLayers: [String] = []
    /// The statistic of each of those layers: "mean" or "mean+sd".
    public var oodStatistic = "mean"
    /// Labels of the validation slices (label key -> class name -> positive): with them, the converter fits a
    /// temperature calibration of the probabilities on those slices (`ProbabilityCalibration`); nil: none.
    public var temperatureLabels: [String: [String: Bool]]?

    public init(weightsPath: String) {
        self.weightsPath = weightsPath
    }
}

/// How close the int8 model stays to the float original.
public struct ConversionReport: Codable, Sendable {
    public struct ClassAgreement: Codable, Sendable {
        public var name: String
        public var threshold: Float
        public var maxAbsDifference: Double
        public var meanAbsDifference: Double
        /// Fraction of slices where int8 and float make the same call at the threshold.
        public var decisionAgreement: Double
        enum CodingKeys: String, CodingKey {
            case name, threshold, maxAbsDifference = "max_abs_probability_difference"
            case meanAbsDifference = "mean_abs_probability_difference", decisionAgreement = "decision_agreement"
        }
    }

    public struct SetAgreement: Codable, Sendable {
        public var samples: Int
        public var classes: [ClassAgreement]
    }

    public struct LayerSQNR: Codable, Sendable {
        public var name: String
        public var sqnrDB: Double
        enum CodingKeys: String, CodingKey { case name, sqnrDB = "sqnr_db" }
    }

    public var weights: String
    public var sourceSHA256: String
    public var layout: WeightLayout
    public var classNames: [String]
    public var calibration: CalibrationSummary
    public var warnings: [String]
    public var layers: [LayerSQNR]
    public var calibrationSet: SetAgreement
    public var heldOutSet: SetAgreement?
    /// The out-of-distribution summary's figures (its arrays are in the model only); nil without one.
    public var ood: OODReport?
    /// The per-layer summaries' figures; nil without them.
    public var oodLayers: OODLayersReport?
    public var probabilityCalibration: ProbabilityCalibration?

    public struct OODLayersReport: Codable, Sendable {
        public var method: String
        public var components: [OODReport]
        public var threshold: Double
        public var thresholdRule: String
        public var validationScores: [String: Double]

        enum CodingKeys: String, CodingKey {
            case method, components, threshold, thresholdRule = "threshold_rule", validationScores = "validation_scores"
        }
    }

    public struct OODReport: Codable, Sendable {
        public var method: String
        public var features: String
        public var shrinkage: Double
        public var threshold: Double
        public var thresholdRule: String
        public var fitSamples: Int
        public var fitSource: String
        public var validationSamples: Int
        public var validationSource: String
        public var validationDistances: [String: Double]

        public init(_ s: OODSummary) {
            (method, features, shrinkage, threshold, thresholdRule) = (s.method, s.features, s.shrinkage, s.threshold, s.thresholdRule)
            (fitSamples, fitSource, validationSamples, validationSource) = (s.fitSamples, s.fitSource, s.validationSamples, s.validationSource)
            validationDistances = s.validationDistances
        }

        enum CodingKeys: String, CodingKey {
            case method, features, shrinkage, threshold, thresholdRule = "threshold_rule", fitSamples = "fit_samples"
            case fitSource = "fit_source", validationSamples = "validation_samples", validationSource = "validation_source"
            case validationDistances = "validation_distances"
        }
    }

    enum CodingKeys: String, CodingKey {
        case weights, sourceSHA256 = "source_sha256", layout, classNames = "class_names", calibration, warnings, layers
        case calibrationSet = "calibration_set", heldOutSet = "held_out_set", ood, oodLayers = "ood_layers"
        case probabilityCalibration = "probability_calibration"
    }
}

/// Float ResNet18 weights in, verified int8 model out.
public enum ModelConverter {
    public static let version = "ichd-convert 2"
    public static let syntheticWarning = "CALIBRATED ON SYNTHETIC PHANTOMS, NOT ON REAL SCANS: activation ranges may not fit real data"

    public static func convert(_ options: ConversionOptions, log: (String) -> Void = { _ in }) throws(ConversionError) -> (ModelFile, ConversionReport) {
        // Weights.
        let weightBytes: Data
        do {
            weightBytes = try Data(contentsOf: URL(fileURLWithPath: options.weightsPath), options: .alwaysMapped)
        } catch {
            throw ConversionError("cannot read \(options.weightsPath): \(error.localizedDescription)")
        }
        let parameters: ResNet18Parameters
        do {
            parameters = try ResNet18Layout.load(try Safetensors.parse(weightBytes), layout: options.layout)
        } catch let e as SafetensorsError {
            throw ConversionError("\(options.weightsPath): \(e.description)")
        } catch let e as LayoutError {
            throw ConversionError("\(options.weightsPath) is not a usable ResNet18:\n\(e.description)")
        } catch {
            throw ConversionError("\(options.weightsPath): \(error)")
        }
        let sha = SHA256.hash(data: weightBytes).map { String(format: "%02x", $0) }.joined()
        let classes = options.classNames ?? RSNALabels.defaultClassNames(count: parameters.numClasses)
        guard classes.count == parameters.numClasses else {
            throw ConversionError("\(classes.count) class names for a model with \(parameters.numClasses) outputs")
        }
        let thresholds = options.thresholds ?? [Float](repeating: 0.5, count: classes.count)
        guard thresholds.count == classes.count, thresholds.allSatisfy({ (0...1).contains($0) }) else {
            throw ConversionError("give one threshold within 0...1 per class (\(classes.count))")
        }
        if let problem = options.preprocessing.problem { throw ConversionError("preprocessing: \(problem)") }

        // Calibration and held-out inputs, through the real preprocessing.
        var warnings: [String] = []
        let pipeline = SlicePipeline(preprocessing: options.preprocessing)
        var calibration: [FeatureMap]
        var heldOut: [FeatureMap]
        let source: String
        if let dir = options.calibrationDirectory {
            // Without a held-out folder every fifth slice is held out: load enough for both sets.
            let wanted = options.heldOutDirectory == nil ? max(5 * options.heldOutSamples, 5 * options.calibrationSamples / 4 + 5)
                                                         : options.calibrationSamples
            let inputs = try CalibrationSlices.load(directory: dir, pipeline: pipeline, limit: wanted, log: log)
            source = dir
            if let held = options.heldOutDirectory {
                calibration = inputs
                heldOut = try CalibrationSlices.load(directory: held, pipeline: pipeline, limit: options.heldOutSamples, log: log)
            } else {
                calibration = inputs.enumerated().filter { inputs.count < 5 || $0.offset % 5 != 4 }.map(\.element)
                heldOut = inputs.count < 5 ? [] : inputs.enumerated().filter { $0.offset % 5 == 4 }.map(\.element)
            }
        } else if options.allowSyntheticCalibration {
            warnings.append(syntheticWarning)
            log("warning: " + syntheticWarning)
            source = "synthetic phantoms"
            let all = CalibrationSlices.synthetic(count: options.calibrationSamples + options.heldOutSamples,
                                                  seed: options.syntheticSeed, pipeline: pipeline)
            calibration = Array(all.prefix(options.calibrationSamples))
            heldOut = Array(all.dropFirst(options.calibrationSamples))
        } else {
            throw ConversionError("no calibration data: give --calibrate DIR (slices like those the appliance will see), "
                                  + "or --allow-synthetic-calibration to calibrate on synthetic phantoms")
        }
        calibration = CalibrationSlices.evenlySpaced(calibration, max: options.calibrationSamples)
        heldOut = CalibrationSlices.evenlySpaced(heldOut, max: options.heldOutSamples)
        log("calibrating on \(calibration.count) slices, \(heldOut.count) held out")

        // Float reference over the calibration set, gathering activation statistics.
        let float = FloatResNet18(parameters)
        var stats = ActivationStatistics(expectedObservations: calibration.count)
        var floatLogits: [[Float]] = []
        for (i, input) in calibration.enumerated() {
            floatLogits.append(float.run(input) { stats.observe($0, $1) }.logits)
            if (i + 1) % 16 == 0 { log("  float reference: \(i + 1)/\(calibration.count)") }
        }

        let floatCalibration = floatLogits.map { $0.map(sigmoid) }
        let names = QuantizedResNet18.activationNames(wideShortcut: options.wideShortcut)
        let selection = Array(0..<calibration.count).filter { $0 % max(1, calibration.count / options.selectionSamples) == 0 }
            .prefix(options.selectionSamples)

        // What the int8 network is made from: the folded network (as it is, or channel-equalised: an equal float
        // function), its activation statistics, its weights' integers (rounded to nearest or by GPTQ).
        struct Candidate {
            var equalized: Bool
            var rounding: WeightRounding
            var parameters: ResNet18Parameters
            var stats: ActivationStatistics
            var integers: [String: [Int8]]
            /// The int16 shortcut path's parameters (it covers what calibration saw with headroom; its step is too
            /// fine for the clipping choice, min-max, percentile or MSE, to matter) and bias correction's means.
            var wide: [String: WideQuantParams]
            var means: [String: [Float]]?

            init(equalized: Bool, rounding: WeightRounding, parameters: ResNet18Parameters, stats: ActivationStatistics,
                 integers: [String: [Int8]], options: ConversionOptions) {
                (self.equalized, self.rounding, self.parameters, self.stats, self.integers) = (equalized, rounding, parameters, stats, integers)
                wide = options.wideShortcut ? stats.wideParameters(names: QuantizedResNet18.wideActivationNames) : [:]
                means = options.biasCorrection ? stats.channelMeans : nil
            }
        }
        // Error = mean |p_int8 - p_float| on the selection slices; saturated probabilities can tie, so the mean
        // |logit difference| breaks ties.
        func measure(_ c: Candidate, _ activations: [String: QuantParams]) -> (error: Double, logitError: Double) {
            let int8 = Int8ResNet18(WeightQuantizer.network(c.parameters, activations: activations, wide: c.wide,
                                                            inputMeans: c.means, integers: c.integers))
            var error = 0.0, logitError = 0.0, n = 0
            for i in selection {
                let logits = int8.run(calibration[i]).logits
                for (c, (a, b)) in zip(logits.map(sigmoid), floatCalibration[i]).enumerated() {
                    error += Double(abs(a - b))
                    logitError += Double(abs(logits[c] - floatLogits[i][c]))
                    n += 1
                }
            }
            return (error / Double(max(1, n)), logitError / Double(max(1, n)))
        }
        func better(_ a: (error: Double, logitError: Double), than b: (error: Double, logitError: Double)) -> Bool {
            a.error < b.error - 1e-9 || (abs(a.error - b.error) <= 1e-9 && a.logitError < b.logitError)
        }
        func logMeasured(_ what: String, _ r: (error: Double, logitError: Double)) {
            log("  \(what): mean |p_int8 - p_float| = \(String(format: "%.6f", r.error)), mean |logit difference| = "
                + "\(String(format: "%.5f", r.logitError)) on \(selection.count) slices")
        }

        guard !options.activationBits.isEmpty, Set(options.activationBits).isSubset(of: QuantParams.supportedBits) else {
            throw ConversionError("activation widths must be among \(QuantParams.supportedBits.map(String.init).joined(separator: ", ")) bits")
        }
        let fineTried = options.activationBits.contains(12) && options.wideShortcut
        let bytesTried = options.activationBits.contains(8)
        guard fineTried || bytesTried else {
            throw ConversionError("12-bit activations need the int16 shortcut path (drop --no-wide-shortcut)")
        }

        let widths = (bytesTried ? [8] : []) + (fineTried ? [12] : [])
        // Every combination asked for is built and measured with min-max activations of each width tried; the
        // best per width goes on (built and measured one at a time: each holds a copy of the network and its
        // statistics; at most one kept per width). A candidate chosen for bytes need not be the best under 12 bits:
        // equalisation pays where byte rounding dominates.
        let combinations = options.equalization.flatMap { e in options.weightRounding.map { (equalized: e, rounding: $0) } }
        guard !combinations.isEmpty else { throw ConversionError("no weight rounding or equalisation choice to try") }
        var kept: [Int: Candidate] = [:]
        var candidateErrors: [Int: [String: Double]] = [:]
        var bestCandidate: [Int: (error: Double, logitError: Double)] = [:]
        var equalized: (parameters: ResNet18Parameters, stats: ActivationStatistics)?
        for (equalize, rounding) in combinations {
            var p = parameters, s = stats
            if equalize {
                if equalized == nil {
                    let q = ChannelEqualization.apply(parameters, maxima: stats.channelMaxima, alpha: options.equalizationAlpha)
                    var t = ActivationStatistics(expectedObservations: calibration.count)
                    let equal = FloatResNet18(q)
                    for input in calibration { _ = equal.run(input) { t.observe($0, $1) } }
                    equalized = (q, t)
                }
                (p, s) = equalized!
            }
            let integers = rounding == .gptq
                ? try LayerHessians.integers(p, calibration: calibration, damp: options.gptqDamp, threads: options.threads, log: log) : [:]
            let c = Candidate(equalized: equalize, rounding: rounding, parameters: p, stats: s, integers: integers, options: options)
            guard combinations.count > 1 else {
                for bits in widths { kept[bits] = c }
                break
            }
            let label = "\(rounding.rawValue)\(equalize ? ", equalised" : "")"
            for bits in widths {
                let result = measure(c, s.parameters(.minMax, names: names, bits: bits))
                candidateErrors[bits, default: [:]][label] = result.error
                logMeasured("weights \(label), \(bits)-bit activations", result)
                if better(result, than: bestCandidate[bits] ?? (.infinity, .infinity)) {
                    bestCandidate[bits] = result
                    kept[bits] = c
                }
            }
        }
        equalized = nil
        // The byte candidate goes through method selection; the 12-bit one is used only if bytes miss the aim.
        let byteCandidate = kept[8] ?? kept[12]!
        stats = byteCandidate.stats
        func measure(_ activations: [String: QuantParams]) -> (error: Double, logitError: Double) { measure(byteCandidate, activations) }

        // Choose the calibration method of byte activations by measured output error (12-bit ones take min-max
        // ranges unless --method forces another: their step is fine enough that clipping does not pay, docs/converting.md).
        var methodErrors: [String: Double] = [:]
        var chosen = options.method ?? .minMax
        var best: (error: Double, logitError: Double) = (.infinity, .infinity)
        for method in !bytesTried ? [] : options.method.map({ [$0] }) ?? CalibrationMethod.allCases {
            let result = measure(stats.parameters(method, names: names))
            methodErrors[method.rawValue] = result.error
            logMeasured(method.rawValue, result)
            if better(result, than: best) {
                best = result
                chosen = method
            }
        }
        // Then tensor by tensor, in network order: another method's range for one tensor is kept when it lowers
        // the measured output error (the issue's "per tensor or globally"); a forced --method skips this.
        var activations = stats.parameters(chosen, names: names)
        var refined: [String: String] = [:]
        if options.method == nil && bytesTried {
            let alternatives = CalibrationMethod.allCases.filter { $0 != chosen }.map { ($0, stats.parameters($0, names: names)) }
            for name in names {
                for (method, params) in alternatives {
                    guard let candidate = params[name], candidate != activations[name] else { continue }
                    var trial = activations
                    trial[name] = candidate
                    let result = measure(trial)
                    if better(result, than: best) {
                        best = result
                        activations = trial
                        refined[name] = method.rawValue
                    }
                }
            }
            log("  per-tensor refinement: \(refined.count) of \(names.count) tensors changed, mean |p_int8 - p_float| = \(String(format: "%.6f", best.error))"
                + (refined.isEmpty ? "" : " (" + refined.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }.joined(separator: ", ") + ")"))
        }
        func build(_ c: Candidate, _ activations: [String: QuantParams]) -> QuantizedResNet18 {
            let network = WeightQuantizer.network(c.parameters, activations: activations, wide: c.wide, inputMeans: c.means, integers: c.integers)
            guard options.biasCorrection else { return network }
            // The shift is a mean over slices: estimated on every calibration slice, not only the selection's.
            let uncorrected = Int8ResNet18(network)
            var shift = [Double](repeating: 0, count: classes.count)
            for (input, reference) in zip(calibration, floatLogits) {
                for (c, (a, b)) in zip(uncorrected.run(input).logits, reference).enumerated() {
                    shift[c] += Double(a - b) / Double(calibration.count)
                }
            }
            log("  classifier bias correction: mean logit shift over \(calibration.count) slices "
                + shift.map { String(format: "%+.4f", $0) }.joined(separator: " "))
            return network.correctingLogits(by: shift.map { Float($0) })
        }
        // The accuracy aim is checked on the held-out slices (the calibration slices when none are held out).
        let floatHeldOut = heldOut.map { float.run($0).logits.map(sigmoid) }
        func aimAgreement(_ int8: Int8ResNet18) -> ConversionReport.SetAgreement {
            heldOut.isEmpty ? agreement(int8: int8, inputs: calibration, floatProbabilities: floatCalibration, classes: classes, thresholds: thresholds)
                            : agreement(int8: int8, inputs: heldOut, floatProbabilities: floatHeldOut, classes: classes, thresholds: thresholds)
        }
        func worst(_ set: ConversionReport.SetAgreement) -> Double { set.classes.map(\.maxAbsDifference).max() ?? 0 }
        // Bytes first; 12-bit activations (twice the convolution work) when bytes miss the aim and 12 bits come closer,
        // from the best candidate under 12 bits (ranges: min-max unless a method is forced).
        let fineMethod = options.method ?? .minMax
        func buildFine() -> QuantizedResNet18 {
            let c = kept[12]!
            return build(c, c.stats.parameters(fineMethod, names: names, bits: 12))
        }
        var bitErrors: [String: Double] = [:]
        var network: QuantizedResNet18
        var aim: ConversionReport.SetAgreement?
        var chosenCandidate = byteCandidate
        if bytesTried {
            network = build(byteCandidate, activations)
            if fineTried {
                aim = aimAgreement(Int8ResNet18(network))
                bitErrors["8"] = worst(aim!)
                log("  8-bit activations: max |p_int8 - p_float| = \(String(format: "%.4f", bitErrors["8"]!)) on \(aim!.samples) "
                    + "\(heldOut.isEmpty ? "calibration" : "held-out") slices (aim \(options.tolerance))")
            }
        } else {
            network = buildFine()  // (byteCandidate is then kept[12])
        }
        if bytesTried && fineTried && bitErrors["8"]! > options.tolerance {
            let fine = buildFine()
            let fineAim = aimAgreement(Int8ResNet18(fine))
            bitErrors["12"] = worst(fineAim)
            log("  12-bit activations: max |p_int8 - p_float| = \(String(format: "%.4f", bitErrors["12"]!))")
            if bitErrors["12"]! < bitErrors["8"]! {
                network = fine
                aim = fineAim
                chosenCandidate = kept[12]!
            }
        }
        kept = [:]
        let fineChosen = network.activationBits == 12
        if fineChosen { chosen = fineMethod }
        let chosenParameters = chosenCandidate.parameters
        let int8 = Int8ResNet18(network)

        // Report: per-layer SQNR on the first selection slices, agreement on both sets.
        var floatActs: [String: [Float]] = [:], intActs: [String: [Float]] = [:]
        var order: [String] = []
        // (against the float network the int8 one was made from: an equalised network's tensors are scaled per channel)
        let chosenFloat = FloatResNet18(chosenParameters)
        for i in selection.prefix(4) {
            _ = chosenFloat.run(calibration[i]) { name, v in
                if floatActs[name] == nil { order.append(name) }
                floatActs[name, default: []] += v.values
            }
            _ = int8.run(calibration[i]) { name, v in intActs[name, default: []] += v.values }
        }
        let layers = order.map { ConversionReport.LayerSQNR(name: $0, sqnrDB: sqnr(reference: floatActs[$0]!, quantized: intActs[$0] ?? [])) }
        // The accuracy aim's set (held-out slices, or the calibration ones when none): measured above when both
        // widths were tried.
        let aimSet = aim ?? aimAgreement(int8)
        let calibrationAgreement = heldOut.isEmpty ? aimSet : agreement(int8: int8, inputs: calibration, floatProbabilities: floatCalibration,
                                                                        classes: classes, thresholds: thresholds)
        let heldOutAgreement = heldOut.isEmpty ? nil : aimSet
        warnings += Self.accuracyWarnings(aimSet, tolerance: options.tolerance)
        let summary = CalibrationSummary(method: chosen.rawValue, methodErrors: methodErrors, samples: calibration.count,
                                         heldOutSamples: heldOut.count, source: source, synthetic: options.calibrationDirectory == nil,
                                         perTensorMethods: options.method == nil && !fineChosen ? refined : nil,
                                         weightRounding: chosenCandidate.rounding.rawValue, channelEqualization: chosenCandidate.equalized,
                                         weightCandidateErrors: candidateErrors[network.activationBits],
                                         activationBits: network.activationBits, activationBitErrors: bitErrors.isEmpty ? nil : bitErrors)
        var card = options.modelCard
        if summary.synthetic { card += " " + syntheticWarning + "." }
        // The out-of-distribution summary, from the int8 network's own features.
        // The temperature calibration, on the same validation slices' int8 logits.
        var ood: OODSummary?, oodLayers: OODEnsemble?, probabilityCalibration: ProbabilityCalibration?
        var validationSamples: [OODFit.Sample] = []
        if options.oodFitDirectory != nil || options.temperatureLabels != nil {
            guard let validationDirectory = options.oodValidationDirectory ?? options.calibrationDirectory else {
                throw ConversionError("the out-of-distribution threshold and the temperature need validation slices: give --ood-validate DIR or --calibrate DIR")
            }
            let engine = Int8ResNet18(network, threads: options.threads)
            let validation = try OODFit.samples(directory: validationDirectory, pipeline: pipeline, engine: engine,
                                                limit: options.oodSamples, statistics: Set(options.oodLayers), log: log)
            validationSamples = validation
            if let labels = options.temperatureLabels {
                let labelled = validation.filter { labels[$0.key] != nil }
                guard !labelled.isEmpty else { throw ConversionError("temperature calibration: no validation slice has a label") }
                let c = try TemperatureFit.fit(logits: labelled.map(\.logits),
                                               labels: labelled.map { s in classes.map { labels[s.key]?[$0] ?? false } },
                                               source: validationDirectory)
                for (i, t) in thresholds.enumerated() where !c.thresholdWithinBounds(t, class: i) {
                    throw ConversionError("temperature calibration: the threshold of \(classes[i]) lies beyond the logit bounds the validation set supports")
                }
                log("temperature calibration on \(labelled.count) validation slices: T = "
                    + c.temperatures.map { String(format: "%.3f", $0) }.joined(separator: ", ")
                    + "; ECE " + zip(c.eceBefore, c.eceAfter).map { String(format: "%.4f -> %.4f", $0, $1) }.joined(separator: ", "))
                probabilityCalibration = c
            }
        }
        if let fitDirectory = options.oodFitDirectory {
            let validationDirectory = options.oodValidationDirectory ?? options.calibrationDirectory!
            let engine = Int8ResNet18(network, threads: options.threads)
            let fitSamples = try OODFit.samples(directory: fitDirectory, pipeline: pipeline, engine: engine, limit: options.oodSamples,
                                                statistics: Set(options.oodLayers), log: log)
            let fit = fitSamples.map(\.features)
            let validation = validationSamples.map(\.features)
            if !options.oodLayers.isEmpty {
                let e = try OODFit.ensemble(fit: fitSamples, validation: validationSamples,
                                            components: options.oodLayers.map { ($0, options.oodStatistic) },
                                            quantile: options.oodQuantile, fitSource: fitDirectory, validationSource: validationDirectory)
                log("out-of-distribution layers: " + e.components.map { "\($0.layer) \($0.statistic) threshold " + String(format: "%.2f", $0.threshold) }
                    .joined(separator: ", ") + String(format: "; combined threshold %.3f", e.threshold) + " (\(e.thresholdRule))")
                oodLayers = e
            }
            let summary = try OODFit.summary(fit: fit, validation: validation, quantile: options.oodQuantile,
                                             fitSource: fitDirectory, validationSource: validationDirectory)
            log(String(format: "out-of-distribution summary: shrinkage %.4f, threshold %.2f", summary.shrinkage, summary.threshold)
                + " (\(summary.thresholdRule))")
            ood = summary
        }
        var metadata = ModelMetadata(
            head: parameters.head.layout, classNames: classes, preprocessing: options.preprocessing, thresholds: thresholds,
            quantization: QuantizationInfo(
                scheme: "int8: weights symmetric per output channel (-127..127, "
                    + (chosenCandidate.rounding == .gptq ? "GPTQ-rounded on the calibration slices" : "rounded to nearest")
                    + (chosenCandidate.equalized ? ", channels equalised" : "") + "); activations "
                    + (fineChosen ? "12-bit affine per tensor (convolutions run on their high and low byte planes, int64 sum)" : "u8 affine per tensor")
                    + "; int32 accumulation"
                    + (network.hasWideShortcut ? "; shortcut path (block outputs for residual adds and pool, downsample outputs, pooled features) int16 symmetric per tensor, int64 accumulation in fc" : "")
                    + (parameters.head.layout == .fastai ? "; fastai head (fc1, ReLU, fc2, BatchNorm1d folded) float32 on the dequantised pooled features" : ""),
                requantization: "v = float(acc) * (s_in * s_w / s_out) [+ float(r - z_r) * (s_r / s_out)]; q = clamp(round_half_even(v)) + z_out; logits = float(acc) * s_in * s_w"
                    + (network.hasWideShortcut ? "; int16: z = 0, q = clamp(round_half_even(v), relu ? 0 : -32767, 32767)" : ""),
                activations: network.activations, wideActivations: network.hasWideShortcut ? network.wideActivations : nil),
            calibration: summary, sourceSHA256: sha, converterVersion: version, created: creationTime(), modelCard: card)
        metadata.ood = ood
        metadata.oodLayers = oodLayers
        metadata.probabilityCalibration = probabilityCalibration
        var report = ConversionReport(weights: options.weightsPath, sourceSHA256: sha, layout: parameters.head.layout, classNames: classes,
                                      calibration: summary, warnings: warnings, layers: layers,
                                      calibrationSet: calibrationAgreement, heldOutSet: heldOutAgreement)
        report.ood = ood.map(ConversionReport.OODReport.init)
        report.oodLayers = oodLayers.map { e in
            ConversionReport.OODLayersReport(method: e.method, components: e.components.map(ConversionReport.OODReport.init),
                                             threshold: e.threshold, thresholdRule: e.thresholdRule, validationScores: e.validationScores)
        }
        report.probabilityCalibration = probabilityCalibration
        return (ModelFile(metadata: metadata, network: network), report)
    }

    /// One warning per class that misses the aim on `set`: a difference above `tolerance`, or a call that differs
    /// at the threshold. The model is still written (the engineer decides), but not silently.
    static func accuracyWarnings(_ set: ConversionReport.SetAgreement, tolerance: Double) -> [String] {
        set.classes.compactMap { c in
            let over = c.maxAbsDifference > tolerance, differs = c.decisionAgreement < 1
            guard over || differs else { return nil }
            return "\(c.name): int8 differs from float by up to \(String(format: "%.4f", c.maxAbsDifference)) on \(set.samples) "
                + "slices (aim \(tolerance))" + (differs ? String(format: ", same call at the threshold on %.1f%%", 100 * c.decisionAgreement) : "")
                + "; measure on more slices (ichd eval --reference) before deploying"
        }
    }

    static func agreement(int8: Int8ResNet18, inputs: [FeatureMap], floatProbabilities: [[Float]], classes: [String],
                          thresholds: [Float]) -> ConversionReport.SetAgreement {
        var maxDiff = [Double](repeating: 0, count: classes.count)
        var sumDiff = [Double](repeating: 0, count: classes.count)
        var agree = [Int](repeating: 0, count: classes.count)
        for (input, pf) in zip(inputs, floatProbabilities) {
            let pq = int8.run(input).logits.map(sigmoid)
            for c in 0..<classes.count {
                let d = Double(abs(pq[c] - pf[c]))
                maxDiff[c] = max(maxDiff[c], d)
                sumDiff[c] += d
                if (pq[c] >= thresholds[c]) == (pf[c] >= thresholds[c]) { agree[c] += 1 }
            }
        }
        let n = Double(max(1, inputs.count))
        return .init(samples: inputs.count, classes: (0..<classes.count).map {
            .init(name: classes[$0], threshold: thresholds[$0], maxAbsDifference: maxDiff[$0], meanAbsDifference: sumDiff[$0] / n,
                  decisionAgreement: Double(agree[$0]) / n)
        })
    }

    /// ISO 8601 UTC; SOURCE_DATE_EPOCH (reproducible builds) wins over the clock.
    static func creationTime() -> String {
        let seconds = ProcessInfo.processInfo.environment["SOURCE_DATE_EPOCH"].flatMap(TimeInterval.init) ?? Date().timeIntervalSince1970
        let f = ISO8601DateFormatter()
        f.timeZone = TimeZone(identifier: "UTC")
        return f.string(from: Date(timeIntervalSince1970: seconds))
    }
}

/// Calibration slices from a folder (through the real ingest and preprocessing) or from synthetic phantoms.
public enum CalibrationSlices {
    /// Every file of the folder is checked (a non-image among calibration slices is an error), but only `limit`
    /// scorable slices, evenly spread over the sorted files (so over series), are prepared and kept: a large
    /// folder costs one decode per file, not a tensor per slice in memory.
    public static func load(directory: String, pipeline: SlicePipeline, limit: Int = .max,
                            log: (String) -> Void) throws(ConversionError) -> [FeatureMap] {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw ConversionError("calibration folder \(directory) does not exist")
        }
        let files = SliceFile.files(inFolder: directory)
        guard !files.isEmpty else { throw ConversionError("calibration folder \(directory) holds no slices") }
        var scorable: [(file: String, frame: Int?)] = []
        var problems: [String] = []
        var skipped = 0
        for file in files {
            pipeline.process(path: file, prepare: false) { result in
                switch result.outcome {
                case .rejected(let r): problems.append("\(file): \(r.message)")
                case .skipped: skipped += 1
                case .ready: scorable.append((file, result.frame))
                }
            }
        }
        guard problems.isEmpty else {
            throw ConversionError("calibration folder \(directory) holds \(problems.count) file(s) that are not usable slices:\n"
                                  + problems.prefix(10).joined(separator: "\n"))
        }
        guard !scorable.isEmpty else {
            throw ConversionError("calibration folder \(directory): all \(skipped) slices have too little brain to score")
        }
        var inputs: [FeatureMap] = []
        for slice in evenlySpaced(scorable, max: limit) {
            pipeline.process(path: slice.file, frames: slice.frame.map { $0..<($0 + 1) }) { result in
                if case .ready(_, let input?) = result.outcome { inputs.append(FeatureMap(input)) }
            }
        }
        log("\(directory): \(scorable.count) scorable slices (\(inputs.count) used), \(skipped) skipped for low brain coverage")
        return inputs
    }

    /// Scorable slices of synthetic phantom series (half with bleeds), preprocessed in memory.
    public static func synthetic(count: Int, seed: UInt64, pipeline: SlicePipeline) -> [FeatureMap] {
        var out: [FeatureMap] = []
        var s = seed
        while out.count < count {
            for slice in PhantomSeries(seed: s, positive: s % 2 == 0).slices() where out.count < count {
                let assessment = pipeline.preprocessor.assess(slice.image)
                guard case .score = assessment else { continue }
                let input = pipeline.preprocessor.prepare(slice.image, assessment: assessment)
                out.append(FeatureMap(input))
            }
            s += 1
        }
        return out
    }

    static func evenlySpaced<T>(_ items: [T], max n: Int) -> [T] {
        guard items.count > n, n > 0 else { return items }
        return (0..<n).map { items[$0 * items.count / n] }
    }
}
