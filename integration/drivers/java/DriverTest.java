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
            // Statement.cancel() from another thread.
            try (Statement s = c.createStatement()) {
                Thread canceller = new Thread(() -> {
                    try { Thread.sleep(500); s.cancel(); } catch (Exception ignored) { }
                });
                canceller.start();
                try {
                    s.executeQuery("SELECT symbol FROM trades WHERE volume < 0 EMIT CHANGES");
                    throw new AssertionError("not cancelled");
                } catch (SQLException e) {
                    check("57014".equals(e.getSQLState()), "cancel sqlstate " + e.getSQLState());
                }
                canceller.join();
            }
            try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery("SELECT 2")) {
                check(rs.next() && rs.getInt(1) == 2, "usable after cancel");
            }
        }
        System.out.println("pgjdbc ok");
    }
}
