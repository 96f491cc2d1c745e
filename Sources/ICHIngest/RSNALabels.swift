/// The RSNA 2019 intracranial-hemorrhage labels, in the order the model outputs them and the label CSVs
/// name them (`ID_<SOPInstanceUID>_<subtype>`). The competition's metric weights `any` twice.
public enum RSNALabels {
    public static let subtypes = ["any", "epidural", "intraparenchymal", "intraventricular", "subarachnoid", "subdural"]

    /// Names for a model's outputs when none are given: the RSNA six for six outputs, else class0, class1, ...
    public static func defaultClassNames(count: Int) -> [String] {
        count == subtypes.count ? subtypes : (0..<count).map { "class\($0)" }
    }
}
