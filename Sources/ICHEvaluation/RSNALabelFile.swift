import Foundation
import ICHIngest

/// Labels in the RSNA 2019 format: a CSV with header `ID,Label` and rows `ID_<SOPInstanceUID>_<subtype>,0|1`.
public struct RSNALabelFile: Sendable {
    /// SOP Instance UID -> subtype -> label.
    public var labels: [String: [String: Bool]] = [:]
    /// Rows whose ID appeared before (the later value is ignored).
    public var duplicates: [String] = []
    /// Rows that are not `ID_<uid>_<subtype>,0|1`, with their line numbers.
    public var malformed: [String] = []

    public init(path: String) throws {
        let text = try String(contentsOfFile: path, encoding: .utf8)
        var seen = Set<String>()
        for (n, line) in text.split(whereSeparator: \.isNewline).enumerated() {
            let fields = line.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
            if n == 0 && fields.first == "ID" { continue }
            guard fields.count == 2, fields[0].hasPrefix("ID_"), let underscore = fields[0].lastIndex(of: "_"),
                  fields[0].index(fields[0].startIndex, offsetBy: 3) < underscore, let value = Int(fields[1]), value == 0 || value == 1 else {
                malformed.append("line \(n + 1)")
                continue
            }
            let uid = String(fields[0][fields[0].index(fields[0].startIndex, offsetBy: 3)..<underscore])
            let subtype = String(fields[0][fields[0].index(after: underscore)...])
            guard RSNALabels.subtypes.contains(subtype) else {
                malformed.append("line \(n + 1) (unknown subtype \(subtype))")
                continue
            }
            guard seen.insert(fields[0]).inserted else {
                duplicates.append(fields[0])
                continue
            }
            labels[uid, default: [:]][subtype] = value == 1
        }
    }
}
