import ArgumentParser
import Foundation
import ICHIngest
import ICHPreprocessing

struct PreprocessCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "preprocess",
        abstract: "Write a slice's model input: an RGB preview (one window per channel) and/or the exact tensor.",
        discussion: """
            The tensor is raw little-endian float32, NCHW 1x3xHxW, normalised: exactly what the engine consumes, \
            so training pipelines and external checkers can use the appliance's own preprocessing. A slice that \
            would be skipped (too little brain) is still written, with a warning on stderr.

            With --dataset OUT, FILE is a folder: every scorable slice under it (searched recursively) goes into \
            OUT/tensors.f16 (half floats, one 3xSxS record per slice) with OUT/index.csv (record, label key, \
            series, file), OUT/excluded.csv (skipped and rejected slices with the reason) and \
            OUT/preprocessing.json: the training recipe in training/ reads exactly this.
            """)

    @Argument(help: "A DICOM or JPEG slice (a folder with --dataset).")
    var file: String

    @Option(help: "Preprocess every slice under the folder FILE into a training dataset folder.")
    var dataset: String?

    @Option(help: "RGB JPEG preview of the windowed, cropped, resized slice.")
    var out: String?

    @Option(help: "Raw little-endian float32 tensor, NCHW 1x3xHxW.")
    var tensor: String?

    @Option(help: "Frame of a multi-frame object (0-based).")
    var frame: Int = 0

    func validate() throws {
        if dataset != nil {
            if out != nil || tensor != nil { throw ValidationError("--dataset writes a folder; leave out --out and --tensor") }
            return
        }
        if out == nil && tensor == nil { throw ValidationError("give --out PREVIEW.jpg and/or --tensor OUT.f32 (or --dataset DIR)") }
        if frame < 0 { throw ValidationError("--frame must be 0 or more") }
    }

    func run() throws {
        let spec = Preprocessing.rsna
        if let dataset {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: file, isDirectory: &isDirectory), isDirectory.boolValue else {
                throw ValidationError("\(file) is not a folder")
            }
            let summary: SliceDataset.Summary
            do {
                summary = try SliceDataset.write(folder: file, to: dataset, preprocessing: spec) { printError($0) }
            } catch {
                printError(error.description)
                throw ExitCode.failure
            }
            print("\(dataset): \(summary.written) slices written, \(summary.skipped) skipped (too little brain), "
                  + "\(summary.rejected) rejected, from \(summary.files) files")
            return
        }
        let pipeline = SlicePipeline(preprocessing: spec)
        let assessment: SliceAssessment, input: ModelInput
        do {
            (assessment, input) = try pipeline.prepareSlice(path: file, frame: frame)
        } catch {
            printError("\(file): \(error.message)")
            throw rejectedExit
        }
        if let reason = assessment.reason { printError("warning: \(file): would be skipped: \(reason)") }
        if let tensor {
            var bytes = [UInt8]()
            bytes.reserveCapacity(input.tensor.count * 4)
            for v in input.tensor { withUnsafeBytes(of: v.bitPattern.littleEndian) { bytes.append(contentsOf: $0) } }
            try writeAtomically(bytes, to: tensor)
        }
        if let out {
            let jpeg = try JPEGCodec.encode(input.previewImage(spec: spec), quality: 92)
            try writeAtomically(jpeg, to: out)
        }
        print("\(file): \(input.channels)x\(input.size)x\(input.size), crop x=\(input.crop.x) y=\(input.crop.y) side=\(input.crop.side), "
              + "brain coverage \(String(format: "%.2f%%", input.brainCoverage * 100))")
    }
}
