//! Contact import benchmark: `cargo bench --bench import` (add `-- --rows N` for another size).
//!
//! Generates a CSV of N contacts (1,000,000 by default), then, each in its own process so peak
//! memory is measured apart:
//!   - baseline: a bare multi-row INSERT of the same rows through the same pool into a fresh
//!     SQLite database (no parsing, no validation, no upsert);
//!   - herald: the real import pipeline (streamed CSV, phone validation, upsert by phone, list
//!     membership) into a fresh SQLite database;
//!   - the same import at a tenth of the size, to show memory does not grow with the file.
//!
//! Then times searches on the imported million. Figures are printed as a table; nothing here
//! asserts a time (benchmarks are not tests).

use std::io::{BufWriter, Write};
use std::process::Command;
use std::time::Instant;

use diesel::connection::SimpleConnection;
use herald::domain::phone::DefaultCountry;
use herald::import::{self, Plan};
use herald::storage::contacts::{self, ContactFilter, Cursor};
use herald::storage::{self, Db, imports};

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Valid North American numbers: area codes 201-989 with valid exchanges.
fn phone(i: usize) -> String {
    let area = 201 + (i / 8_000_000) % 700;
    let exchange = 200 + (i / 10_000) % 800;
    format!("+1{area}{exchange}{:04}", i % 10_000)
}

fn generate(path: &std::path::Path, rows: usize) {
    let file = std::fs::File::create(path).expect("create csv");
    let mut w = BufWriter::new(file);
    writeln!(w, "phone,first_name,last_name,email,tier,city").expect("write");
    let tiers = ["gold", "silver", "bronze"];
    let cities = ["Lyon", "São Paulo", "Zürich", "New York", "Kraków"];
    for i in 0..rows {
        writeln!(
            w,
            "{},Person{i},Müller,p{i}@example.com,{},\"{}\"",
            phone(i),
            tiers[i % 3],
            cities[i % 5]
        )
        .expect("write");
    }
    w.flush().expect("flush");
}

fn fresh_db(dir: &std::path::Path, name: &str) -> Db {
    let url = format!("sqlite://{}", dir.join(name).display());
    let db = Db::connect(&url, 4).expect("db");
    storage::run_migrations(&mut db.get().expect("conn")).expect("migrate");
    db
}

/// Child mode: run one measurement and print "rows_per_sec peak_mib".
fn child(mode: &str, csv: &std::path::Path, dir: &std::path::Path, rows: usize) {
    let db = fresh_db(dir, &format!("{mode}.db"));
    let started = Instant::now();
    match mode {
        "parse" => {
            // Reading and validating only (no database writes): the pipeline's first half.
            let file = std::fs::File::open(csv).expect("open");
            let mut reader = import::records::RecordReader::new(
                std::io::BufReader::with_capacity(256 * 1024, file),
                b',',
            );
            let header = reader.next_record().expect("read").expect("header");
            let headers: Vec<String> = header.fields.iter().map(|f| f.display()).collect();
            let mapping = import::mapping::Mapping::from_headers(&headers).expect("mapping");
            let mut ok = 0usize;
            while let Some(rec) = reader.next_record().expect("read") {
                if import::validate(&rec, &headers, &mapping, DefaultCountry::default()).is_ok() {
                    ok += 1;
                }
            }
            assert_eq!(ok, rows);
        }
        "baseline" => {
            // The same rows, already valid, inserted as they are: 1,000 per transaction, 500
            // per statement, through the same pool.
            let mut conn = db.get().expect("conn");
            let mut reader = csv::Reader::from_path(csv).expect("csv");
            let mut batch: Vec<csv::StringRecord> = Vec::with_capacity(1000);
            let flush = |conn: &mut storage::DbConnection, batch: &mut Vec<csv::StringRecord>| {
                let mut sql = String::from("BEGIN;");
                for chunk in batch.chunks(500) {
                    sql.push_str("INSERT INTO contacts (public_id, phone, name, email, attributes, created_at, updated_at) VALUES ");
                    let values: Vec<String> = chunk
                        .iter()
                        .map(|r| {
                            format!(
                                "('{}','{}','{} {}','{}','{{\"tier\":\"{}\",\"city\":\"{}\"}}','2026-01-01 00:00:00','2026-01-01 00:00:00')",
                                storage::new_public_id(),
                                &r[0],
                                &r[1],
                                &r[2],
                                &r[3],
                                &r[4],
                                &r[5]
                            )
                        })
                        .collect();
                    sql.push_str(&values.join(","));
                    sql.push(';');
                }
                sql.push_str("COMMIT;");
                conn.batch_execute(&sql).expect("insert");
                batch.clear();
            };
            for rec in reader.records() {
                batch.push(rec.expect("record"));
                if batch.len() == 1000 {
                    flush(&mut conn, &mut batch);
                }
            }
            if !batch.is_empty() {
                flush(&mut conn, &mut batch);
            }
        }
        _ => {
            let import = {
                let mut conn = db.get().expect("conn");
                let list = storage::lists::create(&mut conn, "Benchmark").expect("list");
                imports::create(
                    &mut conn,
                    &storage::new_public_id(),
                    "bench.csv",
                    Some(list.id),
                    None,
                    "bench",
                )
                .expect("import")
            };
            let file = std::fs::File::open(csv).expect("open");
            let plan = Plan {
                delimiter: b',',
                mapping: None,
                country: DefaultCountry::default(),
            };
            let summary = import::run(
                &db,
                &import,
                std::io::BufReader::with_capacity(256 * 1024, file),
                &plan,
            )
            .expect("import");
            assert_eq!(summary.imported as usize, rows, "every row imported");
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!("{:.0} {:.1}", rows as f64 / secs, peak_rss_mib());
}

fn run_child(mode: &str, csv: &std::path::Path, dir: &std::path::Path, rows: usize) -> (f64, f64) {
    let exe = std::env::current_exe().expect("exe");
    let out = Command::new(exe)
        .args(["--child", mode, "--csv"])
        .arg(csv)
        .arg("--dir")
        .arg(dir)
        .args(["--rows", &rows.to_string()])
        .output()
        .expect("child");
    assert!(
        out.status.success(),
        "{mode} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut parts = text.split_whitespace();
    let rate = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0.0);
    let mib = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0.0);
    (rate, mib)
}

fn time_search(db: &Db, label: &str, filter: ContactFilter) {
    let mut conn = db.get().expect("conn");
    let started = Instant::now();
    let (rows, _) = contacts::page(&mut conn, &filter, Cursor::First, 50).expect("page");
    let page_ms = started.elapsed().as_secs_f64() * 1000.0;
    let started = Instant::now();
    let n = contacts::count(&mut conn, &filter).expect("count");
    let count_ms = started.elapsed().as_secs_f64() * 1000.0;
    println!(
        "| {label:<34} | {:>7} | {page_ms:>9.1} | {count_ms:>10.1} |",
        n.max(rows.len() as i64)
    );
}

fn main() {
    if let Some(mode) = arg("--child") {
        let csv = std::path::PathBuf::from(arg("--csv").expect("--csv"));
        let dir = std::path::PathBuf::from(arg("--dir").expect("--dir"));
        let rows: usize = arg("--rows").and_then(|r| r.parse().ok()).expect("--rows");
        child(&mode, &csv, &dir, rows);
        return;
    }
    // `cargo bench` passes `--bench`; any other flag is ours.
    let rows: usize = arg("--rows")
        .and_then(|r| r.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let big = dir.path().join("contacts.csv");
    let small = dir.path().join("contacts-small.csv");
    let t = Instant::now();
    generate(&big, rows);
    generate(&small, rows / 10);
    let size = std::fs::metadata(&big).map(|m| m.len()).unwrap_or(0);
    println!(
        "Generated {rows} rows ({:.1} MB) in {:.1} s; SQLite, {} cores",
        size as f64 / 1e6,
        t.elapsed().as_secs_f64(),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );

    let (base_rate, base_mib) = run_child("baseline", &big, dir.path(), rows);
    let (parse_rate, _) = run_child("parse", &big, dir.path(), rows);
    let (rate, mib) = run_child("herald", &big, dir.path(), rows);
    let small_dir = dir.path().join("small");
    std::fs::create_dir_all(&small_dir).expect("dir");
    let (small_rate, small_mib) = run_child("herald", &small, &small_dir, rows / 10);

    println!();
    println!("| run                                   | rows/s  | peak RSS (MiB) |");
    println!("|---------------------------------------|--------:|---------------:|");
    println!("| baseline: bare INSERT, same pool      | {base_rate:>7.0} | {base_mib:>14.1} |");
    println!("| reading + validating only (no writes) | {parse_rate:>7.0} |                |");
    println!("| herald import, {rows:>9} rows        | {rate:>7.0} | {mib:>14.1} |");
    println!(
        "| herald import, {:>9} rows        | {small_rate:>7.0} | {small_mib:>14.1} |",
        rows / 10
    );
    println!();
    println!(
        "Import speed: {:.0}% of the bare INSERT baseline; memory at {rows} rows is {:.1} MiB vs {:.1} MiB at {} rows.",
        rate / base_rate * 100.0,
        mib,
        small_mib,
        rows / 10
    );

    // Searches on the imported contacts (phone metadata loaded first, as the server does at start).
    let _ = herald::domain::phone::E164::parse("+14155550100", None);
    let db = Db::connect(
        &format!("sqlite://{}", dir.path().join("herald.db").display()),
        2,
    )
    .expect("db");
    println!();
    println!("| search on {rows} contacts            | matches | page (ms) | count (ms) |");
    println!("|------------------------------------|--------:|----------:|-----------:|");
    let q = |s: &str| ContactFilter {
        q: Some(s.to_owned()),
        ..ContactFilter::default()
    };
    time_search(&db, "first page, no filter", ContactFilter::default());
    time_search(&db, "exact phone (+1 201 2xx…)", q(&phone(rows / 2)));
    time_search(&db, "phone fragment", q("2015551"));
    time_search(&db, "name", q(&format!("Person{}", rows / 3)));
    time_search(&db, "attribute value (São Paulo)", q("são paulo"));
    // Case and accents folded (issue 15): these found nothing before.
    time_search(&db, "the same, unaccented (sao paulo)", q("sao paulo"));
    time_search(
        &db,
        "name in capitals (PERSON… MULLER)",
        q(&format!("PERSON{} MULLER", rows / 3)),
    );
    time_search(&db, "two letters (no trigram: scan)", q("qx"));
    time_search(&db, "no match (whole table scanned)", q("nobody-here"));
}
