import ArgumentParser
import Foundation
import ICHConverter
import ICHEvaluation
import ICHModel

struct ConvertCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "convert",
        abstract: "Quantise trained float ResNet18 weights (torchvision or fastai layout) to an int8 .ichm model.",
        discussion: """
            Reads a .safetensors state dict (F32, F16 or BF16; docs/converting.md shows how to get one from a .pth \
            or a fastai learner), folds BatchNorm, calibrates activation ranges on slices through the appliance's \
            own preprocessing, chooses the weight rounding (nearest or GPTQ), channel equalisation (on or off) and \
            the calibration method (min-max, percentile, MSE) by measured output error, and reports how close int8 \
            stays to float. Writes atomically: a failed run leaves no model behind.
            """)

    @Argument(help: "Float weights (.safetensors).")
    var weights: String

    @Option(help: "Output model (.ichm).")
    var out: String

    @Option(help: "Weight layout (default: detected).")
    var layout: WeightLayout?

    @Option(help: "Folder of DICOM or JPEG calibration slices (searched recursively).")
    var calibrate: String?

    @Option(help: "Folder of held-out slices for the report (default: every fifth calibration slice).")
    var holdout: String?

    @Flag(help: "Calibrate on synthetic phantoms when no real slices are available (said loudly in report and metadata).")
    var allowSyntheticCalibration = false

    @Option(help: "Class names in output order, comma-separated (default: the RSNA six for 6 outputs).")
    var classes: String?

    @Option(help: "Alert threshold per class, comma-separated probabilities (default 0.5 each).")
    var thresholds: String?

    @Option(help: "Force a calibration method: min-max, percentile or mse.")
    var method: CalibrationMethod?

    @Flag(help: "Leave out bias correction (for comparison; the report shows what it buys).")
    var noBiasCorrection = false

    @Flag(help: "Bytes throughout, no int16 shortcut path: a format version 1 model, for ichd releases that read only version 1 (and for comparison).")
    var noWideShortcut = false

    @Option(help: "Width of the activations convolutions read: 8, 12 (16 times finer steps, twice the convolution time, format version 3) or auto (12 only when 8 misses --tolerance on the held-out slices and 12 comes closer).")
    var activationBits: BitsChoice = .auto

    @Option(help: "How weights are rounded to int8: nearest, gptq (each layer's output error minimised on the calibration slices) or auto (both tried, the one with the smaller measured error kept).")
    var weightRounding: RoundingChoice = .auto

    @Option(help: "Equalise channel ranges before quantising: on, off or auto (both tried, the better kept).")
    var equalize: SwitchChoice = .auto

    @Option(help: "Equalisation strength: a channel's gain is (tensor's largest / channel's largest)^alpha, at most 16.")
    var equalizeAlpha: Float = ChannelEqualization.defaultAlpha

    @Option(help: "Threads for GPTQ's input statistics.")
    var threads = ProcessInfo.processInfo.activeProcessorCount

    @Option(help: "Largest |p_int8 - p_float| per class on the held-out slices before the report warns.")
    var tolerance = 0.02

    @Option(help: "Most calibration slices used.")
    var calibrationSamples = 64

    @Option(help: "Side of the square model input the weights were trained at.")
    var inputSize = 256

    @Option(help: "Write the full report as JSON here.")
    var report: String?

    @Option(help: "In-distribution slices (the training set) to fit the out-of-distribution summary on (mean and shrunk covariance of the pooled features); without it the model reports no ood.")
    var oodFit: String?

    @Option(help: "In-distribution slices, not the fit's (the validation set), that choose the ood threshold (default: --calibrate).")
    var oodValidate: String?

    @Option(help: "Most slices of each ood set used.")
    var oodSamples = 2000

    @Option(help: "The ood threshold: this quantile of the validation slices' distances.")
    var oodQuantile = 0.995

    @Option(help: "Comma-separated activations (stem, maxpool, layer1.0 ... layer4.1) to fit one out-of-distribution summary each on, read together as the ood score (the largest of their normalised distances); needs --ood-fit. Without it: layer4's pooled features alone.")
    var oodLayers: String?

    @Option(help: "The per-channel statistic of each --ood-layers activation: mean, or mean+sd.")
    var oodStatistic = "mean"

    @Option(help: "RSNA-format labels of the validation slices (--ood-validate, else --calibrate): fits a temperature per class on them and stores it in the model (probabilities calibrated, decisions unchanged).")
    var temperatureLabels: String?

    static func list(_ text: String) -> [String] {
        text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }

    func validate() throws {
        if calibrate == nil && !allowSyntheticCalibration {
            throw ValidationError("give --calibrate DIR, or --allow-synthetic-calibration to calibrate on synthetic phantoms")
        }
        if activationBits == .twelve && noWideShortcut { throw ValidationError("--activation-bits 12 needs the int16 shortcut path") }
        if !(equalizeAlpha > 0 && equalizeAlpha <= 1) { throw ValidationError("--equalize-alpha: within (0, 1]") }
        if !(oodQuantile > 0 && oodQuantile <= 1) { throw ValidationError("--ood-quantile: within (0, 1]") }
        if oodSamples < 2 { throw ValidationError("--ood-samples must be at least 2") }
        if let oodLayers {
            if oodFit == nil { throw ValidationError("--ood-layers needs --ood-fit") }
            for name in Self.list(oodLayers) where ResNet18Parameters.channels(of: name) == nil {
                throw ValidationError("--ood-layers: \(name) is not one of stem, maxpool, " + ResNet18Parameters.blockNames.joined(separator: ", "))
            }
        }
        if !OODSummary.statistics.contains(oodStatistic) {
            throw ValidationError("--ood-statistic: one of " + OODSummary.statistics.joined(separator: ", "))
        }
        if calibrationSamples < 1 { throw ValidationError("--calibration-samples must be at least 1") }
        if !(32...1024).contains(inputSize) || inputSize % 32 != 0 { throw ValidationError("--input-size: a multiple of 32 within 32...1024") }
    }

    func run() throws {
        var options = ConversionOptions(weightsPath: weights)
        options.layout = layout
        options.calibrationDirectory = calibrate
        options.heldOutDirectory = holdout
        options.allowSyntheticCalibration = allowSyntheticCalibration
        options.classNames = classes.map { $0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } }
        if let thresholds {
            let values = thresholds.split(separator: ",").map { Float($0.trimmingCharacters(in: .whitespaces)) }
            guard values.allSatisfy({ $0 != nil }) else { throw ValidationError("--thresholds: comma-separated numbers") }
            options.thresholds = values.map { $0! }
        }
        options.method = method
        options.biasCorrection = !noBiasCorrection
        options.tolerance = tolerance
        options.wideShortcut = !noWideShortcut
        options.activationBits = activationBits.candidates
        options.calibrationSamples = calibrationSamples
        options.weightRounding = weightRounding.candidates
        options.equalization = equalize.candidates
        options.equalizationAlpha = equalizeAlpha
        options.threads = max(1, threads)
        options.preprocessing.outputSize = inputSize
        options.oodFitDirectory = oodFit
        options.oodValidationDirectory = oodValidate
        options.oodSamples = oodSamples
        options.oodQuantile = oodQuantile
        options.oodLayers = oodLayers.map(Self.list) ?? []
        options.oodStatistic = oodStatistic
        if let temperatureLabels {
            do {
                options.temperatureLabels = try RSNALabelFile(path: temperatureLabels).labels
            } catch {
                printError("convert: cannot read \(temperatureLabels): \(error.localizedDescription)")
                throw rejectedExit
            }
        }
        let model: ModelFile, summary: ConversionReport
        do {
            (model, summary) = try ModelConverter.convert(options) { printError($0) }
        } catch {
            printError("convert: \(error.description)")
            throw rejectedExit
        }
        if let report {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            try writeAtomically(Array(try encoder.encode(summary)), to: report)
        }
        do {
            try model.write(to: out)
        } catch {
            printError("convert: cannot write \(out): \(error.localizedDescription)")
            throw rejectedExit
        }
        print(Self.text(summary, out: out))
    }

    static func text(_ r: ConversionReport, out: String) -> String {
        var lines: [String] = []
        for w in r.warnings { lines.append("WARNING: \(w)") }
        let bits = r.calibration.activationBits ?? 8
        lines.append("wrote \(out): \(r.layout.rawValue) ResNet18, \(r.classNames.count) classes, int8"
                     + (bits == 8 ? "" : " weights, \(bits)-bit activations"))
        // "name error" pairs in name order (candidate names contain commas, hence the separator).
        func errors(_ e: [String: Double], separator: String) -> String {
            e.sorted { $0.key < $1.key }.map { "\($0.key) \(String(format: "%.5f", $0.value))" }.joined(separator: separator)
        }
        let methods = r.calibration.methodErrors.isEmpty ? "" : errors(r.calibration.methodErrors, separator: ", ")
        lines.append("calibration: \(r.calibration.method)"
                     + (bits != 8 ? " ranges for \(bits)-bit activations" + (methods.isEmpty ? "" : " (for bytes the methods measured: \(methods))")
                                  : " (chosen by output error: \(methods))")
                     + ", \(r.calibration.samples) slices from \(r.calibration.source)")
        lines.append("weights: \(r.calibration.weightRounding ?? WeightRounding.nearest.rawValue)"
                     + (r.calibration.channelEqualization == true ? ", channels equalised" : "")
                     + (r.calibration.weightCandidateErrors.map { " (chosen by output error: \(errors($0, separator: "; ")))" } ?? ""))
        if let bitErrors = r.calibration.activationBitErrors {
            lines.append("activations: \(bits) bits (largest |dp| on the held-out slices: "
                         + bitErrors.sorted { Int($0.key)! < Int($1.key)! }.map { "\($0.key) bits \(String(format: "%.4f", $0.value))" }
                            .joined(separator: ", ") + ")")
        }
        if let perTensor = r.calibration.perTensorMethods {
            lines.append("per-tensor refinement: " + (perTensor.isEmpty ? "no tensor does better with another method"
                : perTensor.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")))
        }
        lines.append("per-layer SQNR int8 vs float (dB):")
        for l in r.layers { lines.append("  \(l.name.padding(toLength: 22, withPad: " ", startingAt: 0)) \(String(format: "%6.1f", l.sqnrDB))") }
        if let ood = r.ood {
            lines.append(String(format: "out-of-distribution summary: Mahalanobis on the pooled features, %d fit slices, shrinkage %.4f, threshold %.2f",
                                ood.fitSamples, ood.shrinkage, ood.threshold) + " (\(ood.thresholdRule))")
        }
        if let e = r.oodLayers {
            lines.append("out-of-distribution layers (\(e.method)), combined threshold " + String(format: "%.3f", e.threshold) + ":")
            for c in e.components {
                lines.append("  \(c.features): shrinkage " + String(format: "%.4f, threshold %.2f", c.shrinkage, c.threshold))
            }
        }
        if let c = r.probabilityCalibration {
            lines.append("temperature calibration on \(c.samples) validation slices (class, T, logit bounds, ECE before -> after):")
            for (i, name) in r.classNames.enumerated() {
                lines.append("  \(name.padding(toLength: 18, withPad: " ", startingAt: 0)) "
                             + String(format: "T %.3f  [%.2f, %.2f]  ECE %.4f -> %.4f", c.temperatures[i], c.logitMin[i], c.logitMax[i],
                                      c.eceBefore[i], c.eceAfter[i]))
            }
        }
        for (label, set) in [("calibration", r.calibrationSet), ("held-out", r.heldOutSet)] {
            guard let set else { continue }
            lines.append("\(label) slices (\(set.samples)): class, max |dp|, mean |dp|, decision agreement at threshold")
            for c in set.classes {
                lines.append("  \(c.name.padding(toLength: 18, withPad: " ", startingAt: 0)) \(String(format: "%.4f  %.5f  %.1f%% @ %.2f", c.maxAbsDifference, c.meanAbsDifference, 100 * c.decisionAgreement, c.threshold))")
            }
        }
        return lines.joined(separator: "\n")
    }
}

extension CalibrationMethod: ExpressibleByArgument {}
extension WeightLayout: ExpressibleByArgument {}

/// `--weight-rounding`: one rounding, or auto (each tried, the converter keeps the better by measured error).
enum RoundingChoice: String, ExpressibleByArgument {
    case auto, nearest, gptq

    var candidates: [WeightRounding] { WeightRounding(rawValue: rawValue).map { [$0] } ?? WeightRounding.allCases }
}

/// `--activation-bits`: 8, 12, or auto (8, and 12 when 8 misses the aim).
enum BitsChoice: String, ExpressibleByArgument {
    case auto, eight = "8", twelve = "12"

    var candidates: [Int] {
        switch self {
        case .auto: [8, 12]
        case .eight: [8]
        case .twelve: [12]
        }
    }
}

/// `--equalize`: on, off, or auto (both tried, the better kept).
enum SwitchChoice: String, ExpressibleByArgument {
    case auto, on, off

    var candidates: [Bool] {
        switch self {
        case .auto: [false, true]
        case .on: [true]
        case .off: [false]
        }
    }
}
