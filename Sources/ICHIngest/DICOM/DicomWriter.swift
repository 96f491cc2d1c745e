import CDicom

/// Builds a DICOM object attribute by attribute and writes it through DCMTK in any transfer syntax ichd
/// reads (compressing as needed). Used by test fixtures and the phantom generator.
public final class DicomWriter {
    public struct WriteError: Error, CustomStringConvertible {
        public let description: String
        public init(description: String) { self.description = description }
    }

    private let handle: OpaquePointer

    public init() {
        handle = ichd_dicom_writer_create()
    }

    deinit { ichd_dicom_writer_free(handle) }

    /// Sets an attribute from text; `path` is a keyword, "(gggg,eeee)", or a DCMTK path through sequence items
    /// such as "(5200,9229)[0].(0028,9145)[0].RescaleIntercept".
    public func set(_ path: String, _ value: String) throws(WriteError) {
        var err = [CChar](repeating: 0, count: 256)
        guard ichd_dicom_writer_put(handle, path, value, &err, err.count) == ICHD_DICOM_OK else {
            throw WriteError(description: "cannot set \(path): \(err.decodedCString)")
        }
    }

    public func set(_ tag: DicomTag, _ value: String) throws(WriteError) {
        try set(tag.description, value)
    }

    /// Removes an attribute (absent is fine).
    public func remove(_ path: String) throws(WriteError) {
        guard ichd_dicom_writer_remove(handle, path) == ICHD_DICOM_OK else {
            throw WriteError(description: "cannot remove \(path)")
        }
    }

    /// Stores the attribute with VR UN (raw value bytes), as some PACS routers do with attributes they do not know.
    public func setUnknownVR(_ tag: DicomTag, bytes: [UInt8]) throws(WriteError) {
        guard ichd_dicom_writer_put_unknown_vr(handle, tag.group, tag.element, bytes, bytes.count) == ICHD_DICOM_OK else {
            throw WriteError(description: "cannot set \(tag) as UN")
        }
    }

    /// Native 16-bit samples (OW). Values are written as their bit patterns: signed data passes Int16 bit patterns.
    public func setPixelData16(_ samples: [UInt16]) throws(WriteError) {
        let status = samples.withUnsafeBytes { raw in
            ichd_dicom_writer_put_pixel_data(handle, raw.baseAddress!.assumingMemoryBound(to: UInt8.self), raw.count, 16)
        }
        guard status == ICHD_DICOM_OK else { throw WriteError(description: "cannot set 16-bit pixel data") }
    }

    /// Native 8-bit samples (OB).
    public func setPixelData8(_ samples: [UInt8]) throws(WriteError) {
        guard ichd_dicom_writer_put_pixel_data(handle, samples, samples.count, 8) == ICHD_DICOM_OK else {
            throw WriteError(description: "cannot set 8-bit pixel data")
        }
    }

    /// Encodes to `transferSyntax` and writes `path`. `withMetaHeader: false` writes a bare dataset
    /// (no preamble, no meta information), as some old senders do.
    public func write(to path: String, transferSyntax: String = TransferSyntax.explicitLittleEndian,
                      withMetaHeader: Bool = true, lossyQuality: Int = 90) throws(WriteError) {
        var err = [CChar](repeating: 0, count: 512)
        let status = ichd_dicom_writer_save(handle, path, transferSyntax, withMetaHeader ? 1 : 0, Int32(lossyQuality), &err, err.count)
        guard status == ICHD_DICOM_OK else {
            throw WriteError(description: "cannot write \(path) as \(transferSyntax): \(err.decodedCString)")
        }
    }
}
