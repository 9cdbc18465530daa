import Foundation

extension HTTPResponse {
    /// Makes a recorded response look fresh for replay (mitmproxy's `Response.refresh()`): the
    /// `Date`, `Expires` and `Last-Modified` headers, and the `Expires` attribute of each
    /// `Set-Cookie`, move forward by the time since the response was recorded (`now` minus
    /// `timestampStart`), so caches and cookie jars treat it as they treated the original.
    ///
    /// Dates are read in any of the three HTTP-date forms (RFC 9110 §5.6.7) and the cookie form
    /// with dashes (`Wed, 09-Jun-2021 10:18:14 GMT`), and written in the preferred IMF-fixdate form.
    /// A header whose date does not parse is left as it is; a cookie whose `Expires` does not parse
    /// loses that attribute, as in mitmproxy.
    public mutating func refresh(now: Double = MitmCore.now()) {
        let delta = now - timestampStart
        for name in ["date", "expires", "last-modified"] {
            guard let value = headers[name], let date = HTTPDate.parse(value) else { continue }
            headers[name] = HTTPDate.format(date + delta)
        }
        let cookies = headers.values(for: "set-cookie")
        guard !cookies.isEmpty else { return }
        headers.remove("set-cookie")
        for cookie in cookies {
            headers.add("set-cookie", Self.refreshedSetCookie(cookie, delta: delta))
        }
    }

    /// `value` with its `Expires` attribute moved by `delta` seconds; a cookie without a name and
    /// value (which mitmproxy would not parse) is kept as it is.
    static func refreshedSetCookie(_ value: String, delta: Double) -> String {
        var parts = value.split(separator: ";", omittingEmptySubsequences: false).map(String.init)
        guard let first = parts.first, let equals = first.firstIndex(of: "="),
            !first[..<equals].trimmingCharacters(in: .whitespaces).isEmpty,
            !first[first.index(after: equals)...].trimmingCharacters(in: .whitespaces).isEmpty
        else { return value }
        var index = 1
        while index < parts.count {
            let attribute = parts[index]
            let trimmed = attribute.trimmingCharacters(in: .whitespaces)
            guard let attrEquals = trimmed.firstIndex(of: "="),
                trimmed[..<attrEquals].trimmingCharacters(in: .whitespaces).lowercased() == "expires"
            else {
                index += 1
                continue
            }
            let date = trimmed[trimmed.index(after: attrEquals)...].trimmingCharacters(in: .whitespaces)
            if let parsed = HTTPDate.parse(date) {
                let leading = attribute.prefix { $0 == " " }
                let name = trimmed[..<attrEquals]
                parts[index] = "\(leading)\(name)=\(HTTPDate.format(parsed + delta))"
                index += 1
            } else {
                parts.remove(at: index)
            }
        }
        return parts.joined(separator: ";")
    }
}

/// HTTP dates (RFC 9110 §5.6.7) as seconds since 1970, read leniently, written as IMF-fixdate.
public enum HTTPDate {
    private static let months = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
    private static let monthNames = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
    private static let dayNames = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"]  // 1970-01-01 was a Thursday

    /// Reads `Sun, 06 Nov 1994 08:49:37 GMT`, `Sunday, 06-Nov-94 08:49:37 GMT`,
    /// `Sun Nov  6 08:49:37 1994` and the cookie form `Sun, 06-Nov-1994 08:49:37 GMT`; a numeric
    /// zone (`+0200`) is honoured. `nil` when `text` is none of these.
    public static func parse(_ text: String) -> Double? {
        // Dashes separate the date's parts in RFC 850 and cookie dates, but sign a numeric zone.
        let tokens = text.split(whereSeparator: { $0 == " " || $0 == "," || $0 == "\t" }).flatMap { word -> [String] in
            word.hasPrefix("-") ? [String(word)] : word.split(separator: "-").map(String.init)
        }
        var day: Int?
        var month: Int?
        var year: Int?
        var time: (Int, Int, Int)?
        var offset = 0
        for token in tokens {
            let lower = token.lowercased()
            if time == nil, token.contains(":") {
                let pieces = token.split(separator: ":").map { Int($0) }
                guard pieces.count == 3 || pieces.count == 2, pieces.allSatisfy({ $0 != nil }) else { return nil }
                time = (pieces[0]!, pieces[1]!, pieces.count == 3 ? pieces[2]! : 0)
            } else if month == nil, lower.count >= 3, let index = months.firstIndex(of: String(lower.prefix(3))),
                lower.allSatisfy(\.isLetter)
            {
                month = index + 1
            } else if lower == "gmt" || lower == "utc" || lower == "ut" || lower == "z" {
                continue
            } else if (token.hasPrefix("+") || token.hasPrefix("-")) && token.count == 5, let value = Int(token.dropFirst()) {
                let sign = token.hasPrefix("-") ? -1 : 1
                offset = sign * ((value / 100) * 3600 + (value % 100) * 60)
            } else if let number = Int(token) {
                if day == nil && token.count <= 2 && year == nil {
                    day = number
                } else if year == nil {
                    year = number
                } else {
                    return nil
                }
            } else if lower.allSatisfy(\.isLetter) {
                continue  // the weekday
            } else {
                return nil
            }
        }
        guard let day, let month, var year, let time, (1...31).contains(day), time.0 < 24, time.1 < 60, time.2 < 61 else {
            return nil
        }
        if year < 100 { year += year < 70 ? 2000 : 1900 }  // RFC 850's two-digit years, as Python reads them
        let days = CivilDate.days(year: year, month: month, day: day)
        return Double(days * 86400 + time.0 * 3600 + time.1 * 60 + time.2 - offset)
    }

    /// `Sun, 06 Nov 1994 08:49:37 GMT`.
    public static func format(_ seconds: Double) -> String {
        let total = Int(seconds.rounded(.down))
        let days = total >= 0 ? total / 86400 : (total - 86399) / 86400
        let secondsOfDay = total - days * 86400
        let (year, month, day) = CivilDate.date(days: days)
        let weekday = dayNames[((days % 7) + 7) % 7]
        func two(_ n: Int) -> String { n < 10 ? "0\(n)" : "\(n)" }
        return "\(weekday), \(two(day)) \(monthNames[month - 1]) \(year) "
            + "\(two(secondsOfDay / 3600)):\(two(secondsOfDay % 3600 / 60)):\(two(secondsOfDay % 60)) GMT"
    }
}

/// Dates of the proleptic Gregorian calendar as days since 1970-01-01, and back (Howard Hinnant's
/// algorithms): what HTTP dates and HAR timestamps are converted with, without Foundation's calendars.
public enum CivilDate {
    public static func days(year: Int, month: Int, day: Int) -> Int {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let mp = (month + 9) % 12
        let doy = (153 * mp + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146097 + doe - 719468
    }

    public static func date(days: Int) -> (year: Int, month: Int, day: Int) {
        let z = days + 719468
        let era = (z >= 0 ? z : z - 146096) / 146097
        let doe = z - era * 146097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let day = doy - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        return (yoe + era * 400 + (month <= 2 ? 1 : 0), month, day)
    }
}
