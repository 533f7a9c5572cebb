import java.sql.*;
import java.util.*;

/** pgjdbc DatabaseMetaData through the gateway: what DBeaver, DataGrip and
 *  Metabase call when they open a connection. Exits non-zero on a failed check. */
public class MetadataTest {
    static void check(boolean ok, String what) {
        if (!ok) throw new AssertionError(what);
    }

    static List<String> column(ResultSet rs, String name) throws SQLException {
        List<String> out = new ArrayList<>();
        while (rs.next()) out.add(rs.getString(name));
        rs.close();
        return out;
    }

    public static void main(String[] args) throws Exception {
        String url = "jdbc:postgresql://" + args[0] + ":" + args[1] + "/velostream";
        try (Connection c = DriverManager.getConnection(url, "velo", "")) {
            DatabaseMetaData md = c.getMetaData();
            check(md.getDatabaseProductName().equals("PostgreSQL"), "product name");
            check(md.getDatabaseMajorVersion() == 15, "major version " + md.getDatabaseMajorVersion());

            List<String> catalogs = column(md.getCatalogs(), "TABLE_CAT");
            check(catalogs.contains("velostream"), "getCatalogs: " + catalogs);

            List<String> schemas = column(md.getSchemas(), "TABLE_SCHEM");
            check(schemas.contains("public") && schemas.contains("pg_catalog")
                && schemas.contains("information_schema"), "getSchemas: " + schemas);

            List<String> tables = column(md.getTables(null, "public", "%", new String[] {"TABLE", "VIEW"}), "TABLE_NAME");
            check(tables.contains("trades"), "getTables: " + tables);
            ResultSet t = md.getTables(null, "public", "trades", null);
            check(t.next() && t.getString("TABLE_TYPE").equals("TABLE"), "trades is a TABLE");
            t.close();

            ResultSet cols = md.getColumns(null, "public", "trades", "%");
            Map<String, String> types = new LinkedHashMap<>();
            List<String> order = new ArrayList<>();
            while (cols.next()) {
                String name = cols.getString("COLUMN_NAME");
                order.add(name);
                types.put(name, cols.getInt("DATA_TYPE") + "/" + cols.getString("TYPE_NAME") + "/"
                    + cols.getInt("COLUMN_SIZE") + "/" + cols.getInt("DECIMAL_DIGITS") + "/"
                    + cols.getInt("ORDINAL_POSITION") + "/" + cols.getString("IS_NULLABLE"));
            }
            cols.close();
            check(order.equals(Arrays.asList("symbol", "price", "volume", "ts")), "column order " + order);
            check(types.get("symbol").startsWith(Types.VARCHAR + "/text/"), "symbol " + types.get("symbol"));
            check(types.get("price").equals(Types.NUMERIC + "/numeric/18/2/2/NO"), "price " + types.get("price"));
            check(types.get("volume").startsWith(Types.BIGINT + "/int8/"), "volume " + types.get("volume"));
            check(types.get("ts").startsWith(Types.TIMESTAMP + "/timestamp/"), "ts " + types.get("ts"));

            List<String> typeNames = column(md.getTypeInfo(), "TYPE_NAME");
            check(typeNames.contains("int8") && typeNames.contains("numeric") && typeNames.contains("text")
                && typeNames.contains("timestamptz"), "getTypeInfo: " + typeNames.size() + " types");

            check(column(md.getPrimaryKeys(null, "public", "trades"), "COLUMN_NAME").isEmpty(), "no primary key");
            check(column(md.getIndexInfo(null, "public", "trades", false, true), "INDEX_NAME").isEmpty(), "no indexes");
            check(column(md.getImportedKeys(null, "public", "trades"), "FKCOLUMN_NAME").isEmpty(), "no foreign keys");
            List<String> functions = column(md.getFunctions(null, "public", "%"), "FUNCTION_NAME");
            check(functions.isEmpty(), "no user functions: " + functions);

            // A prepared catalog query with a parameter, as tools run them.
            try (PreparedStatement ps = c.prepareStatement(
                    "SELECT c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n "
                    + "ON c.relnamespace = n.oid WHERE n.nspname = ? AND c.relname = ?")) {
                ps.setString(1, "public");
                ps.setString(2, "trades");
                ResultSet rs = ps.executeQuery();
                check(rs.next() && rs.getString(1).equals("trades"), "prepared catalog query");
            }
            // Mixing catalog and stream in one statement is refused, clearly.
            try (Statement s = c.createStatement()) {
                s.executeQuery("SELECT * FROM trades t JOIN pg_catalog.pg_class c ON c.relname = t.symbol");
                check(false, "mixed statement should fail");
            } catch (SQLException e) {
                check("0A000".equals(e.getSQLState()), "mixed statement SQLSTATE " + e.getSQLState());
            }
            System.out.println("pgjdbc metadata ok");
        }
    }
}
