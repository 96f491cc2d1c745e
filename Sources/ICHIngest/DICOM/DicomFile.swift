import CDicom

/// One opened DICOM file: DCMTK's parsed header with the pixel data left on disk until a frame is decoded.
/// Not thread-safe (DCMTK's dataset is not); one reader per file.
final class DicomFile {
    enum OpenError: Error {
        case notDicom(String)
        case truncated(String)
        case unreadable(String)
    }

    private let handle: OpaquePointer

    init(path: String) throws(OpenError) {
        var handle: OpaquePointer?
        var err = [CChar](repeating: 0, count: 512)
        let status = ichd_dicom_open(path, &handle, &err, err.count)
        let message = err.decodedCString
        switch status {
        case ICHD_DICOM_OK where handle != nil: self.handle = handle!
        case ICHD_DICOM_NOT_DICOM: throw .notDicom(message)
        case ICHD_DICOM_TRUNCATED: throw .truncated(message)
        default: throw .unreadable(message.isEmpty ? "DCMTK could not read the file" : message)
        }
    }

    deinit { ichd_dicom_close(handle) }

    var transferSyntaxUID: String {
        var buf = [CChar](repeating: 0, count: 128)
        ichd_dicom_transfer_syntax(handle, &buf, buf.count)
        return buf.decodedCString
    }

    /// All values of an element as DCMTK formats them (backslash-separated), trimmed; nil when absent.
    /// With `frame`, looks in that frame's functional-group `macro` first (enhanced multi-frame objects).
    func string(_ tag: DicomTag, frame: Int? = nil, macro: DicomTag? = nil) -> String? {
        var buf = [CChar](repeating: 0, count: 1024)
        let status = ichd_dicom_get_string(
            handle, Int32(frame ?? -1), macro?.group ?? 0, macro?.element ?? 0, tag.group, tag.element,
            &buf, buf.count)
        guard status == ICHD_DICOM_OK else { return nil }
        return buf.decodedCString.trimmingSpaces
    }

    func values(_ tag: DicomTag, frame: Int? = nil, macro: DicomTag? = nil) -> [String]? {
        string(tag, frame: frame, macro: macro).map { $0.split(separator: "\\", omittingEmptySubsequences: false).map { String($0).trimmingSpaces } }
    }

    func doubles(_ tag: DicomTag, frame: Int? = nil, macro: DicomTag? = nil) -> [Double]? {
        guard let values = values(tag, frame: frame, macro: macro) else { return nil }
        let numbers = values.compactMap { Double($0) }
        return numbers.count == values.count && !numbers.isEmpty ? numbers : nil
    }

    func int(_ tag: DicomTag) -> Int? {
        guard let text = string(tag) else { return nil }
        return Int(text) ?? Double(text).flatMap { $0.isFinite ? Int(exactly: $0.rounded()) : nil }
    }

    struct PixelDataInfo {
        var length: UInt64
        var encapsulated: Bool
        var fragments: Int
    }

    var pixelDataInfo: PixelDataInfo? {
        var length: UInt64 = 0
        var encapsulated: Int32 = 0
        var fragments: UInt32 = 0
        guard ichd_dicom_pixel_data_info(handle, &length, &encapsulated, &fragments) == ICHD_DICOM_OK else { return nil }
        return PixelDataInfo(length: length, encapsulated: encapsulated != 0, fragments: Int(fragments))
    }

    /// Decodes one frame into `buffer` (native little-endian samples of BitsAllocated); returns DCMTK's
    /// complaint on failure.
    func decodeFrame(_ frame: Int, into buffer: UnsafeMutableRawBufferPointer) -> String? {
        var err = [CChar](repeating: 0, count: 512)
        let status = ichd_dicom_decode_frame(
            handle, UInt32(frame), buffer.baseAddress!.assumingMemoryBound(to: UInt8.self), buffer.count,
            &err, err.count)
        return status == ICHD_DICOM_OK ? nil : err.decodedCString
    }
}

extension Array where Element == CChar {
    /// The NUL-terminated text a C call left in this buffer.
    var decodedCString: String {
        String(decoding: prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

extension String {
    /// DICOM pads text values with spaces (and UIDs with NUL); neither is part of the value.
    var trimmingSpaces: String {
        var s = Substring(self)
        while let last = s.last, last == " " || last == "\0" { s = s.dropLast() }
        while let first = s.first, first == " " { s = s.dropFirst() }
        return String(s)
    }
}
