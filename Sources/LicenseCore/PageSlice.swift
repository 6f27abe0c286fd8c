/// One page of a list as the service reads it: at most the page size of items, in the list's
/// order, and whether more follow. The dispatcher sends as many of them as fit in a frame and
/// makes the next page's token from the last one sent.
public struct PageSlice<Item: Sendable>: Sendable {
    public var items: [Item]
    /// Whether items follow the last of `items`.
    public var hasMore: Bool

    public init(items: [Item], hasMore: Bool) {
        self.items = items
        self.hasMore = hasMore
    }

    /// The first `size` of `items` read with one more than the page size (`size + 1`), the
    /// extra one only telling that more follow.
    public init(lookahead items: [Item], size: Int) {
        self.items = Array(items.prefix(size))
        self.hasMore = items.count > size
    }

    /// The default and largest page sizes, and how a requested size (0: the default) is checked.
    public static var defaultSize: Int { 100 }
    public static var maximumSize: Int { 1000 }

    public static func size(_ requested: Int, field: String) throws -> Int {
        if requested == 0 { return defaultSize }
        guard (1...maximumSize).contains(requested) else {
            throw LicenseError.invalid("\(field) must be between 1 and \(maximumSize)")
        }
        return requested
    }
}
