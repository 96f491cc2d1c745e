import Foundation

/// A file from the drop folder, opened as what it is: a DICOM object (frames decoded on demand) or an 8-bit
/// JPEG slice in the research project's preprocessed format (window channels already applied).
public enum SliceFile {
    case dicom(DicomSliceReader)
    case jpeg(Image8)

    /// Label and note files that sit beside slices (labels.csv, series.csv, README) are not slices.
    public static let sidecarExtensions: Set<String> = ["csv", "json", "txt", "md"]

    /// Every candidate slice file under `folder` (recursively, sorted): hidden files and folders and sidecar
    /// files left out, everything else included, so that a stray non-image is reported rather than ignored.
    public static func files(inFolder folder: String) -> [String] {
        (FileManager.default.enumerator(atPath: folder)?.allObjects as? [String] ?? [])
            .filter { !$0.split(separator: "/").contains { $0.hasPrefix(".") } }
            .map { (folder as NSString).appendingPathComponent($0) }
            .filter { path in
                var isDirectory: ObjCBool = false
                return FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) && !isDirectory.boolValue
                    && !sidecarExtensions.contains((path as NSString).pathExtension.lowercased())
            }
            .sorted()
    }

    /// JPEG slices larger than this are refused before reading (a 512x512 RGB slice is well under 1 MiB).
    public static let maxJPEGBytes = 64 << 20

    /// Names the measure in words, for the quarantine reason file.
    static func agreementSummary(_ a: ChannelAgreement) -> String {
        String(format: "its %@ channels order %.2f%% of pixel pairs oppositely (a greyscale or windowed slice: at most %.2f%%), "
               + "as a photo, screenshot or colour overlay does", a.channelNames, a.discordantPairs * 100,
               ChannelAgreement.maxDiscordantPairs * 100)
    }

    /// Opens by content, not by name: JPEG starts with FF D8 FF; anything else goes to the DICOM reader,
    /// which decides whether it is DICOM at all.
    public static func open(path: String, limits: IngestLimits = .default) throws(IngestRejection) -> SliceFile {
        // Only regular files: a FIFO would block the reader, a directory is a mistake in the drop folder.
        if let type = (try? FileManager.default.attributesOfItem(atPath: path))?[.type] as? FileAttributeType,
           type != .typeRegular {
            throw .unreadable(type == .typeDirectory ? "is a directory" : "not a regular file")
        }
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw .unreadable(FileManager.default.fileExists(atPath: path) ? "permission denied" : "no such file")
        }
        defer { try? handle.close() }
        let head = (try? handle.read(upToCount: 3)) ?? nil
        if let head, head.count == 3, head[head.startIndex] == 0xFF, head[head.startIndex + 1] == 0xD8, head[head.startIndex + 2] == 0xFF {
            let size = (try? handle.seekToEnd()) ?? 0
            guard size <= UInt64(maxJPEGBytes) else {
                throw .invalidDimensions("JPEG file of \(size) bytes (accepted: up to \(maxJPEGBytes))")
            }
            guard (try? handle.seek(toOffset: 0)) != nil, let data = try? handle.readToEnd() else {
                throw .unreadable("read failed")
            }
            let image = try JPEGCodec.decode([UInt8](data))
            if let agreement = ChannelAgreement(image), !agreement.isGreyscaleOrWindows {
                throw .colourJPEG(agreementSummary(agreement))
            }
            return .jpeg(image)
        }
        return .dicom(try DicomSliceReader(path: path, limits: limits))
    }
}

