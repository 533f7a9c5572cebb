// pgjdbc against the gateway: typed PreparedStatement parameters (past
// prepareThreshold, so server-side prepared statements are reused), errors
// with SQLSTATE, a bounded query, setFetchSize streaming of an EMIT CHANGES
// query with autocommit off, and Statement.cancel(). Usage: DriverTest HOST PORT
import java.math.BigDecimal;
import java.sql.*;
import java.util.Properties;

public class DriverTest {
    static void check(boolean ok, String what) {
        if (!ok) throw new AssertionError(what);
    }

    /** Whether the engine runs a query whose SQL holds `fragment` (SHOW JOBS on its own connection). */
    static boolean running(String url, String fragment) throws SQLException {
        try (Connection w = DriverManager.getConnection(url, "alice", "");
             Statement s = w.createStatement();
             ResultSet rs = s.executeQuery("SHOW JOBS")) {
            while (rs.next()) {
                if (rs.getString("sql").contains(fragment)) return true;
            }
            return false;
        }
    }

    /** Waits until the query is running (or, with `wanted` false, gone). */
    static void waitUntil(String url, String fragment, boolean wanted, long millis) throws Exception {
        long end = System.currentTimeMillis() + millis;
        while (running(url, fragment) != wanted) {
            if (System.currentTimeMillis() > end) {
                throw new AssertionError(fragment + (wanted ? " never ran" : " still runs"));
            }
            Thread.sleep(20);
        }
    }

    public static void main(String[] args) throws Exception {
        String url = "jdbc:postgresql://" + args[0] + ":" + args[1] + "/velostream";
        Properties props = new Properties();
        props.setProperty("user", "alice");
        props.setProperty("prepareThreshold", "2");
        props.setProperty("connectTimeout", "10");
        try (Connection c = DriverManager.getConnection(url, props)) {
            try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery("SELECT 1")) {
                check(rs.next() && rs.getInt(1) == 1, "SELECT 1");
            }
            try (PreparedStatement ps = c.prepareStatement(
                    "SELECT symbol, price, volume, ts FROM trades WHERE volume > ? AND symbol <> ? LIMIT 3")) {
                for (int i = 0; i < 4; i++) { // crosses prepareThreshold
                    ps.setLong(1, 0);
                    ps.setString(2, "nope");
                    int n = 0;
                    try (ResultSet rs = ps.executeQuery()) {
                        while (rs.next()) {
                            n++;
                            BigDecimal price = rs.getBigDecimal(2);
                            check(price.scale() == 2, "price scale " + price);
                            check(rs.getLong(3) > 0, "volume");
                            check(rs.getTimestamp(4) != null, "ts");
                        }
                    }
                    check(n == 3, "3 rows, got " + n);
                }
            }
            // Decimal and timestamp parameters: each bound value decides
            // the count, so a parameter bound wrong changes the answer.
            try (PreparedStatement ps = c.prepareStatement(
                    "SELECT price FROM trades WHERE price >= ? AND ts > ? LIMIT 3")) {
                Object[][] cases = {
                    {new BigDecimal("0.01"), java.sql.Timestamp.valueOf("2000-01-01 00:00:00"), 3},
                    {new BigDecimal("100000000.00"), java.sql.Timestamp.valueOf("2000-01-01 00:00:00"), 0},
                    {new BigDecimal("0.01"), java.sql.Timestamp.valueOf("2999-01-01 00:00:00"), 0},
                };
                for (int round = 0; round < 2; round++) { // crosses prepareThreshold
                    for (Object[] k : cases) {
                        ps.setBigDecimal(1, (BigDecimal) k[0]);
                        ps.setTimestamp(2, (java.sql.Timestamp) k[1]);
                        int n = 0;
                        try (ResultSet rs = ps.executeQuery()) {
                            while (rs.next()) n++;
                        }
                        check(n == (Integer) k[2], "price >= " + k[0] + " and ts > " + k[1] + ": " + n + " rows");
                    }
                }
            }
            try (Statement s = c.createStatement()) {
                s.executeQuery("SELECT * FROM nope");
                throw new AssertionError("no error");
            } catch (SQLException e) {
                check("42P01".equals(e.getSQLState()), "sqlstate " + e.getSQLState());
            }
            // setFetchSize streams (portal with a row limit, PortalSuspended).
            c.setAutoCommit(false);
            try (Statement s = c.createStatement()) {
                s.setFetchSize(5);
                try (ResultSet rs = s.executeQuery("SELECT symbol, price FROM trades EMIT CHANGES")) {
                    int n = 0;
                    while (n < 12 && rs.next()) {
                        check(rs.getString(1) != null, "symbol");
                        n++;
                    }
                    check(n == 12, "streamed " + n);
                }
            }
            c.rollback();
            c.setAutoCommit(true);
            // Statement.cancel() from another thread, once the engine runs
            // the query (a cancel that lands before it starts is dropped).
            try (Statement s = c.createStatement()) {
                Thread canceller = new Thread(() -> {
                    try {
                        waitUntil(url, "'jdbc'", true, 10_000);
                        s.cancel();
                    } catch (Exception e) {
                        throw new RuntimeException(e);
                    }
                });
                canceller.start();
                try {
                    s.executeQuery("SELECT symbol FROM trades WHERE volume < 0 AND symbol <> 'jdbc' EMIT CHANGES");
                    throw new AssertionError("not cancelled");
                } catch (SQLException e) {
                    check("57014".equals(e.getSQLState()), "cancel sqlstate " + e.getSQLState());
                }
                canceller.join();
                waitUntil(url, "'jdbc'", false, 2_000);
            }
            try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery("SELECT 2")) {
                check(rs.next() && rs.getInt(1) == 2, "usable after cancel");
            }
        }
        System.out.println("pgjdbc ok");
    }
}
