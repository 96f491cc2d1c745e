import ArgumentParser
import Foundation
import ICHDecision
import ICHEngine
import ICHIngest
import ICHModel
import ICHPreprocessing

struct InferCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "infer",
        abstract: "Score one slice or tensor: logits and sigmoid probabilities in class order.",
        discussion: """
            --model takes an int8 .ichm (the appliance's engine) or float .safetensors (the reference executor). \
            --tensor takes raw little-endian float32 NCHW 1x3xSxS, already normalised (S: the model's input size). \
            --image takes a DICOM or JPEG slice through the model's own preprocessing. --cam OUT.jpg writes one \
            heatmap overlay per positive class (OUT-<class>.jpg), or for the most probable class when none is positive.
            """)

    @Option(help: "Model: .ichm (int8) or .safetensors (float32 reference).")
    var model: String

    @Option(help: "Weight layout for .safetensors (default: detected).")
    var layout: WeightLayout?

    @Option(help: "Normalised input tensor (raw little-endian float32, NCHW 1x3xSxS).")
    var tensor: String?

    @Option(help: "A DICOM or JPEG slice.")
    var image: String?

    @Flag(help: "Print one JSON object.")
    var json = false

    @Option(help: "Heatmap overlay JPEG (one per positive class).")
    var cam: String?

    func validate() throws {
        if (tensor == nil) == (image == nil) { throw ValidationError("give exactly one of --tensor and --image") }
        if cam != nil && image == nil && tensor == nil { throw ValidationError("--cam needs an input") }
    }

    func run() throws {
        let scorer: SliceScorer
        do {
            scorer = try SliceScorer(path: model, layout: layout)
        } catch {
            printError(error.description)
            throw rejectedExit
        }
        let size = scorer.preprocessing.outputSize
        let input: FeatureMap
        var preview: Image8? = nil
        if let tensor {
            guard let data = FileManager.default.contents(atPath: tensor) else {
                printError("cannot read \(tensor)")
                throw rejectedExit
            }
            guard data.count == 3 * size * size * 4 else {
                printError("\(tensor): \(data.count) bytes; a 1x3x\(size)x\(size) float32 tensor has \(3 * size * size * 4)")
                throw rejectedExit
            }
            let values = data.withUnsafeBytes { raw in
                (0..<(3 * size * size)).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self))) }
            }
            guard values.allSatisfy({ $0.isFinite }) else {
                printError("\(tensor): holds NaN or infinite values")
                throw rejectedExit
            }
            input = FeatureMap(channels: 3, height: size, width: size, values: values)
            let m = ModelInput(size: size, channels: 3, tensor: values, crop: CropBox(x: 0, y: 0, side: size), brainCoverage: 0)
            preview = m.previewImage(spec: scorer.preprocessing)
        } else {
            let prepared: ModelInput
            do {
                let (assessment, slice) = try SlicePipeline(preprocessing: scorer.preprocessing).prepareSlice(path: image!)
                if let reason = assessment.reason { printError("warning: \(image!): would be skipped: \(reason)") }
                prepared = slice
            } catch {
                printError("\(image!): \(error.message)")
                throw rejectedExit
            }
            input = FeatureMap(prepared)
            preview = prepared.previewImage(spec: scorer.preprocessing)
        }
        let result = scorer.score(input) { cam == nil ? [] : SliceReport.heatmapClasses($0) }
        var camFiles: [String] = []
        if let cam, let preview {
            let base = (cam as NSString).deletingPathExtension, ext = (cam as NSString).pathExtension
            for heatmap in result.heatmaps {
                let file = "\(base)-\(result.classNames[heatmap.classIndex]).\(ext.isEmpty ? "jpg" : ext)"
                try writeAtomically(try JPEGCodec.encode(ClassActivationMap.overlay(heatmap, on: preview)), to: file)
                camFiles.append(file)
            }
        }
        if json {
            let object: [String: Any] = [
                "model": model, "engine": scorer.engineName, "classes": result.classNames,
                "logits": result.logits.map(Double.init), "probabilities": result.probabilities.map(Double.init),
                "thresholds": result.thresholds.map(Double.init), "positive": result.classNames.indices.map { result.positives.contains($0) },
                "cam_files": camFiles,
                // The out-of-distribution score (1 and above: unlike every training slice, the probabilities are
                // not evidence); null for a model without a summary.
                "ood": result.ood.map { Double($0) } ?? NSNull(),
                "out_of_distribution": result.ood == nil ? NSNull() : result.isOutOfDistribution,
            ]
            print(String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self))
        } else {
            print("\(scorer.engineName) \(model)")
            for (i, name) in result.classNames.enumerated() {
                let mark = result.positives.contains(i) ? "POSITIVE" : ""
                print("  \(name.padding(toLength: 18, withPad: " ", startingAt: 0)) logit \(String(format: "%8.4f", result.logits[i]))  p \(String(format: "%.4f", result.probabilities[i]))  \(mark)")
            }
            for f in camFiles { print("  heatmap: \(f)") }
            if let ood = result.ood {
                print("  ood \(String(format: "%.2f", ood))" + (result.isOutOfDistribution
                    ? "  OUT OF DISTRIBUTION: unlike every slice the model was trained on; these probabilities are not evidence"
                    : "  (within the training distribution: below 1)"))
            } else {
                print("  ood -  (the model carries no out-of-distribution summary)")
            }
        }
    }
}
