DROP TABLE broadcast_csv_rows;
