import Foundation
import ICHIngest

extension SliceResult {
    /// The key labels are filed under: the SOP Instance UID, or for a JPEG slice its file name without the
    /// RSNA `ID_` prefix and the extension (the research project's `ID_<id>.jpg`).
    public var labelKey: String {
        header?.sopInstanceUID
            ?? ((path as NSString).lastPathComponent as NSString).deletingPathExtension.replacingOccurrences(of: "ID_", with: "")
    }
}

/// A folder of slices turned into the exact tensors the engine consumes, for training outside the appliance
/// (training/): what the model learns from is what the appliance feeds it, so the two cannot drift apart.
///
/// Layout of the output folder:
/// - `tensors.f16`: one record per scorable slice, channel-major 3xSxS IEEE half floats, little endian, no header;
/// - `index.csv`: `row,key,series,instance,file,frame,brain_coverage` (row = record number in tensors.f16);
/// - `excluded.csv`: `key,file,frame,outcome,reason` for slices skipped (too little brain) or rejected;
/// - `preprocessing.json`: the preprocessing description the tensors were made with (normalisation included).
/// Half floats keep the normalised values to about 3 significant digits (the windows' own resolution is
/// coarser: 80 HU over 256 output levels would be 0.3 HU; half floats resolve 0.04 HU of the brain window).
public enum SliceDataset {
    public struct Summary: Sendable {
        public var files = 0
        public var written = 0
        public var skipped = 0
        public var rejected = 0
    }

    public struct WriteError: Error, CustomStringConvertible {
        public let description: String
    }

    /// Preprocesses every slice file under `folder` (searched recursively, sorted) into `output`.
    public static func write(folder: String, to output: String, preprocessing: Preprocessing,
                             log: (String) -> Void = { _ in }) throws(WriteError) -> Summary {
        do {
            try FileManager.default.createDirectory(atPath: output, withIntermediateDirectories: true)
        } catch {
            throw WriteError(description: "cannot create \(output): \(error.localizedDescription)")
        }
        let tensorPath = (output as NSString).appendingPathComponent("tensors.f16")
        guard FileManager.default.createFile(atPath: tensorPath, contents: nil),
              let handle = FileHandle(forWritingAtPath: tensorPath) else {
            throw WriteError(description: "cannot write \(tensorPath)")
        }
        defer { try? handle.close() }

        let files = SliceFile.files(inFolder: folder)
        let pipeline = SlicePipeline(preprocessing: preprocessing)
        var summary = Summary(files: files.count)
        var index = ["row,key,series,instance,file,frame,brain_coverage"]
        var excluded = ["key,file,frame,outcome,reason"]
        var writeFailure: String?
        for (n, file) in files.enumerated() {
            let relative = String(file.dropFirst(folder.count).drop { $0 == "/" })
            pipeline.process(path: file) { result in
                let frame = result.frame.map(String.init) ?? ""
                switch result.outcome {
                case .rejected(let rejection):
                    summary.rejected += 1
                    excluded.append([result.labelKey, relative, frame, "rejected", rejection.code].map(csvField).joined(separator: ","))
                case .skipped(let assessment):
                    summary.skipped += 1
                    excluded.append([result.labelKey, relative, frame, "skipped",
                                     String(format: "brain coverage %.4f", assessment.brainCoverage)].map(csvField).joined(separator: ","))
                case .ready(_, let input?):
                    let halves = input.tensor.map { Float16($0).bitPattern.littleEndian }
                    do {
                        try halves.withUnsafeBytes { try handle.write(contentsOf: Data($0)) }
                    } catch {
                        writeFailure = "cannot write \(tensorPath): \(error.localizedDescription)"
                        return
                    }
                    index.append([String(summary.written), result.labelKey, result.header?.seriesInstanceUID ?? "",
                                  result.header?.instanceNumber.map(String.init) ?? "", relative, frame,
                                  String(format: "%.5f", input.brainCoverage)].map(csvField).joined(separator: ","))
                    summary.written += 1
                case .ready(_, nil):
                    break
                }
            }
            if let writeFailure { throw WriteError(description: writeFailure) }
            if (n + 1) % 500 == 0 { log("  \(n + 1)/\(files.count) files") }
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        do {
            try AtomicFile.write(Data((index.joined(separator: "\n") + "\n").utf8), to: (output as NSString).appendingPathComponent("index.csv"))
            try AtomicFile.write(Data((excluded.joined(separator: "\n") + "\n").utf8), to: (output as NSString).appendingPathComponent("excluded.csv"))
            try AtomicFile.write(try encoder.encode(preprocessing), to: (output as NSString).appendingPathComponent("preprocessing.json"))
        } catch {
            throw WriteError(description: "\(error)")
        }
        return summary
    }

    /// Quotes a CSV field when it holds a comma, quote or line break (file names may).
    private static func csvField(_ value: String) -> String {
        guard value.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) else { return value }
        return "\"" + value.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }
}
