import ArgumentParser

/// Follows the pages of a list call: asks for pages of up to `size` items until the server
/// answers without a next-page token, or until `limit` items are read.
enum Pages {
    static let size = 1000

    /// `limit` is a `--limit` option's value: at most that many items; 0 or none: every item.
    static func collect<Item>(
        limit: UInt32? = nil, _ page: (_ token: String, _ size: UInt32) async throws -> (items: [Item], next: String)
    ) async throws -> [Item] {
        let limit = limit.flatMap { $0 == 0 ? nil : Int($0) }
        var items: [Item] = []
        var token = ""
        while true {
            let wanted = limit.map { min(size, $0 - items.count) } ?? size
            guard wanted > 0 else { return items }
            let (got, next) = try await page(token, UInt32(wanted))
            items += got
            if next.isEmpty { return items }
            // A server that answers a page with nothing and the same token would loop forever.
            guard !got.isEmpty || next != token else { throw ValidationError("the server repeated an empty page; stopping") }
            token = next
        }
    }
}
