package main

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/imagebake/imagebake/internal/buildinfo"
	"github.com/imagebake/imagebake/recipes"
	"github.com/imagebake/imagebake/templates"
)

func outputFlag() *cli.StringFlag {
	return &cli.StringFlag{Name: "output", Aliases: []string{"o"}, Value: "text", Usage: "text or json", EnvVars: envs("OUTPUT")}
}

func checkOutput(c *cli.Context) error {
	if o := c.String("output"); o != "text" && o != "json" {
		return usageErr("--output %q: use text or json", o)
	}
	return nil
}

type validateResult struct {
	File   string               `json:"file"`
	Valid  bool                 `json:"valid"`
	Name   string               `json:"name,omitempty"`
	Hash   string               `json:"hash,omitempty"`
	Errors []recipes.FieldError `json:"errors"`
}

func validateCommand() *cli.Command {
	return &cli.Command{
		Name:      "validate",
		Usage:     "check recipes: every error with file:line:col, the field and what to do",
		ArgsUsage: "RECIPE...",
		Description: "Loads each recipe strictly (unknown keys, wrong types, duplicate keys are errors), validates it,\n" +
			"and renders it to check the cloud-config fits Azure's custom-data limit. Exit 0 when all are valid, 1 otherwise.",
		Flags: []cli.Flag{outputFlag()},
		Action: func(c *cli.Context) error {
			if err := checkOutput(c); err != nil {
				return err
			}
			if c.NArg() == 0 {
				return usageErr("validate needs at least one recipe file, e.g. imagebake validate recipes/*.yaml")
			}
			var results []validateResult
			bad := 0
			for _, path := range c.Args().Slice() {
				res := validateOne(path)
				if !res.Valid {
					bad++
				}
				results = append(results, res)
			}
			w := c.App.Writer
			if c.String("output") == "json" {
				enc := json.NewEncoder(w)
				enc.SetIndent("", "  ")
				if err := enc.Encode(results); err != nil {
					return err
				}
			} else {
				for _, r := range results {
					if r.Valid {
						fmt.Fprintf(w, "%s: valid (recipe %s, hash %.12s)\n", r.File, r.Name, r.Hash)
						continue
					}
					for _, e := range r.Errors {
						fmt.Fprintln(c.App.ErrWriter, e.Error())
					}
					fmt.Fprintf(c.App.ErrWriter, "%s: %d error(s)\n", r.File, len(r.Errors))
				}
			}
			if bad > 0 {
				return cli.Exit("", exitFailed)
			}
			return nil
		},
	}
}

func validateOne(path string) validateResult {
	res := validateResult{File: path, Errors: []recipes.FieldError{}}
	r, err := recipes.Load(path)
	if err != nil {
		var list *recipes.ErrorList
		if errors.As(err, &list) {
			res.Errors = list.Errors
		} else {
			res.Errors = []recipes.FieldError{{File: path, Message: err.Error()}}
		}
		return res
	}
	doc, err := templates.Render(r, templates.Options{})
	if err == nil {
		err = templates.CheckTargets(r, doc)
	}
	if err != nil {
		res.Errors = []recipes.FieldError{{File: path, Message: err.Error()}}
		return res
	}
	res.Valid, res.Name, res.Hash = true, r.Name, r.Hash()
	return res
}

// loadRecipe loads one recipe, turning validation errors into exit code 2
// (bad input) with every error listed.
func loadRecipe(c *cli.Context) (*recipes.Recipe, error) {
	if c.NArg() != 1 {
		return nil, usageErr("%s needs exactly one recipe file", c.Command.Name)
	}
	r, err := recipes.Load(c.Args().First())
	if err != nil {
		return nil, cli.Exit(err.Error(), exitUsage)
	}
	return r, nil
}

func renderCommand() *cli.Command {
	return &cli.Command{
		Name:      "render",
		Usage:     "print the cloud-config a recipe renders to",
		ArgsUsage: "RECIPE",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "format", Value: "cloud-config", Usage: "cloud-config, or custom-data (gzip+base64, as sent to Azure)", EnvVars: envs("FORMAT")},
		},
		Action: func(c *cli.Context) error {
			format := c.String("format")
			if format != "cloud-config" && format != "custom-data" {
				return usageErr("--format %q: use cloud-config or custom-data", format)
			}
			r, err := loadRecipe(c)
			if err != nil {
				return err
			}
			doc, err := templates.Render(r, templates.Options{})
			if err != nil {
				return cli.Exit(err.Error(), exitFailed)
			}
			if format == "custom-data" {
				cd, err := templates.CustomData(doc)
				if err != nil {
					return cli.Exit(fmt.Sprintf("%s: %v", r.Source, err), exitFailed)
				}
				_, err = fmt.Fprintln(c.App.Writer, cd)
				return err
			}
			_, err = c.App.Writer.Write(doc.CloudConfig)
			return err
		},
	}
}

func versionCommand() *cli.Command {
	return &cli.Command{
		Name:  "version",
		Usage: "print imagebake's version and commit",
		Flags: []cli.Flag{outputFlag()},
		Action: func(c *cli.Context) error {
			if err := checkOutput(c); err != nil {
				return err
			}
			info := buildinfo.Get()
			if c.String("output") == "json" {
				return json.NewEncoder(c.App.Writer).Encode(info)
			}
			fmt.Fprintf(c.App.Writer, "imagebake %s", info.Version)
			if info.Commit != "" {
				fmt.Fprintf(c.App.Writer, " (commit %.12s", info.Commit)
				if info.Modified {
					fmt.Fprint(c.App.Writer, ", modified")
				}
				fmt.Fprint(c.App.Writer, ")")
			}
			fmt.Fprintf(c.App.Writer, " %s\n", info.Go)
			return nil
		},
	}
}
