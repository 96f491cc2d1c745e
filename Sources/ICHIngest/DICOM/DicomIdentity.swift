/// The UIDs of a DICOM object, read without validating it as a CT slice: the daemon keys every file by
/// SOP Instance UID and groups it by series even when ingest refuses it (a localizer, a report sent to the
/// wrong box), so a refused object is counted in its series and recognised when it arrives twice.
public struct DicomIdentity: Sendable, Equatable {
    public var sopInstanceUID: String
    public var seriesInstanceUID: String
    public var studyInstanceUID: String

    /// Nil when the file is not readable as DICOM or has no SOP Instance UID.
    public static func read(path: String) -> DicomIdentity? {
        guard let file = try? DicomFile(path: path), let sop = file.string(.sopInstanceUID), !sop.isEmpty else { return nil }
        return DicomIdentity(sopInstanceUID: sop, seriesInstanceUID: file.string(.seriesInstanceUID) ?? "",
                             studyInstanceUID: file.string(.studyInstanceUID) ?? "")
    }
}
